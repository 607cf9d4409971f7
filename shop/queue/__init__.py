"""The waiting room's pages: the line (``/drops/<slug>/queue``) and the refusal of a skipped
line; the rules are in ``shop/waiting_room.py``."""
