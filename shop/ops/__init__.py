"""What operators and their machines ask the shop: health (``/healthz``, ``/readyz``) and
metrics (``/metrics``); see docs/OPERATIONS.md."""
