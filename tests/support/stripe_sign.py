"""Signs and checks Stripe webhook payloads with the official `stripe` library (16.1.0), so the
tests can prove the server's signature check agrees with Stripe's own code.

    python stripe_sign.py SECRET [--timestamp UNIX] < payload.json
    python stripe_sign.py SECRET --check HEADER < payload.json

The payload is read from stdin as is, byte for byte. The first form prints a Stripe-Signature
header value for it (t=...,v1=...), computed by stripe.WebhookSignature.generate_signature_header
and verified with stripe.Webhook.construct_event before it is printed; --timestamp signs as of
that moment (for a stale signature), and then only the signature is verified, not its age.
The second form only verifies HEADER with construct_event (default tolerance, 300 s) and exits
0 if Stripe's library accepts it, 1 if not, with the reason on stderr (2: wrong usage).
"""

import sys

import stripe


def main(args):
    options = args[1:]
    if not args or args[0].startswith("--") or len(options) not in (0, 2) or (
        options and options[0] not in ("--check", "--timestamp")
    ):
        print(__doc__, file=sys.stderr)
        return 2
    secret = args[0]
    payload = sys.stdin.buffer.read().decode("utf-8")

    if options and options[0] == "--check":
        try:
            stripe.Webhook.construct_event(payload, options[1], secret)
        except (stripe.SignatureVerificationError, ValueError) as err:
            print(f"rejected: {err}", file=sys.stderr)
            return 1
        return 0

    timestamp = int(options[1]) if options else None
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    # never print a header Stripe's library would not accept
    tolerance = None if timestamp is not None else stripe.Webhook.DEFAULT_TOLERANCE
    stripe.Webhook.construct_event(payload, header, secret, tolerance=tolerance)
    print(header)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
