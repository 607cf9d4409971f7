"""The operator console (``/operator``): makers, invitations and every drop in the shop."""
