"""``python -m stripe_emulator``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import sys

from stripe_emulator.app import create_app, get_state
from stripe_emulator.server import build_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator", description="Local Stripe emulator (test mode only)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default=None, help="where to POST signed events")
    parser.add_argument("--webhook-secret", default="whsec_emulator")
    parser.add_argument("--public-url", default=None, help="base URL browsers use for /checkout")
    parser.add_argument("--api-key-prefix", default="sk_test_")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    app = create_app(
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        api_key_prefix=args.api_key_prefix,
        public_base_url=args.public_url,
    )
    server = build_server(args.host, args.port, app, quiet=not args.access_log)
    state = get_state(app)
    state.start()
    webhooks = args.webhook_url or "none (events are only stored)"
    print(
        f"Stripe emulator listening on http://{args.host}:{server.server_port} "
        f"(webhooks: {webhooks})",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
