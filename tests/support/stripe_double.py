"""A local test double of the Stripe API for the tests: payment intents, refunds, events and
signed webhooks, answered in the shapes of Stripe's published fixtures. Standard library only.

    python stripe_double.py PORT FOLDER

Listens on 127.0.0.1:PORT. Answers are built from Stripe's fixtures3.json (STRIPE_FIXTURES, by
default /work/shared/reference/stripe/fixtures3.json). Every request is logged as one JSON line in FOLDER/requests.log
(method, path, lower-cased headers, parsed params). Stripe's endpoints:

    POST /v1/payment_intents               GET  /v1/payment_intents/ID
    POST /v1/payment_intents/ID/confirm    POST /v1/payment_intents/ID/capture
    POST /v1/payment_intents/ID/cancel     POST /v1/refunds
    GET  /v1/refunds/ID    GET /v1/charges/ID    GET /v1/events/ID

The outcome of a confirmation depends on the test payment method, as on Stripe: pm_card_visa
(and any other pm_ id) succeeds, pm_card_chargeDeclined and the other pm_card_chargeDeclined*
ids are declined with 402, pm_card_threeDSecure2Required and pm_card_authenticationRequired
need the shopper's authentication (see CARDS).

Controls for the tests, not Stripe's:

    GET  /_test/3ds/PI         the page next_action redirects the shopper to
    POST /_test/3ds/PI         outcome=succeed|fail: the shopper's authentication
    POST /_test/fail           mode=500|hang&count=N: the next N /v1/ requests fail or hang
    POST /_test/webhook        url, secret, type, object_id[, event_id][, signature=bad|stale]:
                               sends a signed event, answers {event_id, status, payload, header}
    GET  /_test/state          every payment intent, charge, refund and event
    POST /_test/reset          forgets them all
"""

import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

PORT = int(sys.argv[1])
FOLDER = Path(sys.argv[2])
# Stripe's published fixtures: every answer starts as a deep copy of one of them.
FIXTURES = Path(os.environ.get("STRIPE_FIXTURES", "/work/shared/reference/stripe/fixtures3.json"))
RESOURCES = json.loads(FIXTURES.read_text())["resources"]

# The version of the `stripe` 16.1.0 library (stripe._api_version), stamped on events.
API_VERSION = "2026-10-28.endive"

# What a confirmation with each test payment method does: ("ok" | "3ds" | "decline", last4,
# and for a decline the error's code, decline_code and message, as Stripe's test cards give).
CARDS = {
    "pm_card_visa": ("ok", "4242", None),
    "pm_card_mastercard": ("ok", "4444", None),
    "pm_card_threeDSecure2Required": ("3ds", "3220", None),
    "pm_card_authenticationRequired": ("3ds", "3184", None),
    "pm_card_chargeDeclined": ("decline", "0002", ("card_declined", "generic_decline", "Your card was declined.")),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "decline",
        "9995",
        ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    ),
    "pm_card_chargeDeclinedFraudulent": ("decline", "0019", ("card_declined", "fraudulent", "Your card was declined.")),
    "pm_card_chargeDeclinedLostCard": ("decline", "9987", ("card_declined", "lost_card", "Your card was declined.")),
    "pm_card_chargeDeclinedStolenCard": ("decline", "9979", ("card_declined", "stolen_card", "Your card was declined.")),
    "pm_card_chargeDeclinedExpiredCard": ("decline", "0069", ("expired_card", "expired_card", "Your card has expired.")),
    "pm_card_chargeDeclinedIncorrectCvc": (
        "decline",
        "0127",
        ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ),
    "pm_card_chargeDeclinedProcessingError": (
        "decline",
        "0119",
        ("processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit."),
    ),
}

# The parameters Stripe takes on each endpoint (from the `stripe` library's params classes);
# any other is refused with parameter_unknown, as Stripe does.
CREATE_PARAMS = {
    "allowed_payment_method_types", "amount", "amount_details", "application_fee_amount",
    "automatic_payment_methods", "capture_method", "confirm", "confirmation_method", "confirmation_token",
    "currency", "customer", "customer_account", "description", "error_on_requires_action",
    "excluded_payment_method_types", "expand", "mandate", "mandate_data", "metadata", "off_session",
    "on_behalf_of", "payment_details", "payment_method", "payment_method_configuration",
    "payment_method_data", "payment_method_options", "payment_method_types", "radar_options",
    "receipt_email", "return_url", "setup_future_usage", "shipping", "statement_descriptor",
    "statement_descriptor_suffix", "transfer_data", "transfer_group", "use_stripe_sdk",
}
CONFIRM_PARAMS = {
    "allowed_payment_method_types", "amount_details", "amount_to_confirm", "capture_method",
    "confirmation_token", "error_on_requires_action", "excluded_payment_method_types", "expand", "mandate",
    "mandate_data", "off_session", "payment_details", "payment_method", "payment_method_data",
    "payment_method_options", "payment_method_types", "radar_options", "receipt_email", "return_url",
    "setup_future_usage", "shipping", "use_stripe_sdk", "client_secret",
}
CAPTURE_PARAMS = {
    "amount_details", "amount_to_capture", "application_fee_amount", "expand", "final_capture", "metadata",
    "payment_details", "statement_descriptor", "statement_descriptor_suffix", "transfer_data",
}
CANCEL_PARAMS = {"cancellation_reason", "expand"}
RETRIEVE_PARAMS = {"client_secret", "expand"}
REFUND_PARAMS = {
    "amount", "charge", "currency", "customer", "expand", "instructions_email", "metadata", "origin",
    "payment_intent", "reason", "refund_application_fee", "reverse_transfer",
}
# The smallest amount Stripe charges in a few currencies (others: 1).
MINIMUM_AMOUNTS = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50, "sek": 300, "nok": 300, "dkk": 250}
ALPHANUMERIC = string.ascii_letters + string.digits

LOCK = threading.RLock()
LOG_LOCK = threading.Lock()
INTENTS = {}  # id -> Intent
CHARGES = {}  # id -> charge object
REFUNDS = {}  # id -> refund object
EVENTS = {}  # id -> (event object, payload as first sent)
IDEMPOTENCY = {}  # key -> the first request and its answer
FAILURES = {"mode": None, "count": 0}


def new_id(prefix, length=24):
    return prefix + "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def fixture(name):
    return copy.deepcopy(RESOURCES[name])


class ApiError(Exception):
    """An answer in Stripe's error shape. `saved` is whether an Idempotency-Key remembers it:
    Stripe does not for requests that fail validation before the endpoint runs."""

    def __init__(self, status, type_, message, code=None, param=None, saved=False, **extra):
        super().__init__(message)
        error = {"type": type_, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
        if param:
            error["param"] = param
        error.update(extra)
        self.status, self.body, self.saved = status, {"error": error}, saved


def invalid(message, code=None, param=None, saved=False, status=400):
    return ApiError(status, "invalid_request_error", message, code=code, param=param, saved=saved)


def missing(kind, id_, param="id"):
    return ApiError(404, "invalid_request_error", f"No such {kind}: '{id_}'", code="resource_missing", param=param)


# Stripe's form encoding: a[b]=1 is {"a": {"b": "1"}}, a[]=1&a[]=2 and a[0]=1&a[1]=2 are lists.
KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_form(text):
    root = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        match = KEY.match(key)
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2)) if match else [key]
        put(root, parts, value, key)
    return {k: listify(v, k) for k, v in root.items()}


def put(node, parts, value, key):
    head, rest = parts[0], parts[1:]
    if head == "":
        # a[] appends; a[][b] fills the last hash until it already has b
        if not isinstance(node, list):
            raise invalid(f"Invalid array: {key}", param=key)
        if not rest:
            node.append(value)
            return
        if not node or not isinstance(node[-1], dict) or rest[0] in node[-1]:
            node.append({})
        put(node[-1], rest, value, key)
        return
    if not isinstance(node, dict):
        raise invalid(f"Invalid hash: {key}", param=key)
    if not rest:
        node[head] = value
        return
    child = node.setdefault(head, [] if rest[0] == "" else {})
    if isinstance(child, str):
        raise invalid(f"Invalid hash: {key}", param=key)
    put(child, rest, value, key)


def listify(value, name):
    # hashes keyed 0, 1, 2... are arrays, except under metadata, whose keys are the caller's
    if isinstance(value, list):
        return [listify(item, name) for item in value]
    if not isinstance(value, dict):
        return value
    if name != "metadata" and value and all(k.isdigit() for k in value):
        return [listify(value[k], name) for k in sorted(value, key=int)]
    return {k: listify(v, k if name != "metadata" else name) for k, v in value.items()}


def check_params(params, allowed):
    for name in params:
        if name not in allowed:
            raise invalid(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def integer(params, name, required=False, minimum=1):
    if name not in params or params[name] == "":
        if required:
            raise invalid(f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    try:
        number = int(params[name])
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {params[name]}", code="parameter_invalid_integer", param=name) from None
    if number < minimum:
        raise invalid(
            f"This value must be greater than or equal to {minimum}.", code="parameter_invalid_integer", param=name
        )
    return number


def boolean(params, name):
    value = params.get(name)
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise invalid(f"Invalid boolean: {value}", param=name)


def choice(params, name, allowed, default=None):
    value = params.get(name, default)
    if value not in allowed and value != default:
        raise invalid(f"Invalid {name}: must be one of {', '.join(allowed)}", param=name)
    return value


def metadata(params, current=None):
    given = params.get("metadata")
    result = dict(current or {})
    if given == "":
        return {}  # metadata= unsets every key
    if given is None:
        return result
    if not isinstance(given, dict):
        raise invalid("Invalid hash", param="metadata")
    for key, value in given.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid value for metadata[{key}]: must be a string", param=f"metadata[{key}]")
        if value == "":
            result.pop(key, None)  # metadata[k]= unsets k
        else:
            result[key] = value
    return result


def money(amount, currency):
    return f"{amount / 100:.2f} {currency.upper()}"


def payment_method_object(pm):
    obj = fixture("payment_method")
    _, last4, _ = CARDS.get(pm, ("ok", "4242", None))
    obj.update(id=pm, created=int(time.time()), customer=None, metadata={}, livemode=False)
    obj["billing_details"] = {
        "address": {k: None for k in obj["billing_details"]["address"]},
        "email": None,
        "name": None,
        "phone": None,
        "tax_id": None,
    }
    obj["card"].update(last4=last4, generated_from=None, wallet=None)
    return obj


class Intent:
    """A payment intent: its public object, and what Stripe keeps about it besides."""

    def __init__(self, obj):
        self.obj = obj
        self.return_url = None
        self.refunds = []  # ids, oldest first
        self.request = {"id": None, "idempotency_key": None}  # the last request that changed it

    @property
    def id(self):
        return self.obj["id"]


def create_intent(params, request):
    check_params(params, CREATE_PARAMS)
    amount = integer(params, "amount", required=True, minimum=0)
    currency = params.get("currency")
    if not currency:
        raise invalid("Missing required param: currency.", code="parameter_missing", param="currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise invalid(f"Invalid currency: {currency}.", param="currency")
    currency = currency.lower()
    minimum = MINIMUM_AMOUNTS.get(currency, 1)
    if amount < minimum:
        raise invalid(f"Amount must be at least {money(minimum, currency)}", code="amount_too_small", param="amount")
    if amount > 99999999:
        raise invalid(f"Amount must be no more than {money(99999999, currency)}", code="amount_too_large", param="amount")
    capture_method = choice(params, "capture_method", ("automatic", "automatic_async", "manual"), "automatic")
    confirm = boolean(params, "confirm")
    payment_method = params.get("payment_method") or None
    check_payment_method(payment_method)
    if params.get("return_url") and not confirm:
        raise invalid(
            "You cannot pass `return_url` when `confirm` is false. Pass `return_url` when confirming the PaymentIntent.",
            param="return_url",
        )

    obj = fixture("payment_intent")
    id_ = new_id("pi_")
    types = params.get("payment_method_types")
    automatic = params.get("automatic_payment_methods")
    obj.update(
        id=id_,
        object="payment_intent",
        amount=amount,
        amount_capturable=0,
        amount_details={"tip": {}},
        amount_received=0,
        application=None,
        application_fee_amount=None,
        automatic_payment_methods=(
            None if types else {"enabled": not (isinstance(automatic, dict) and automatic.get("enabled") == "false")}
        ),
        canceled_at=None,
        cancellation_reason=None,
        capture_method=capture_method,
        client_secret=f"{id_}_secret_{new_id('')}",
        confirmation_method=params.get("confirmation_method", "automatic"),
        created=int(time.time()),
        currency=currency,
        customer=params.get("customer") or None,
        customer_account=params.get("customer_account") or None,
        description=params.get("description") or None,
        excluded_payment_method_types=params.get("excluded_payment_method_types") or None,
        last_payment_error=None,
        latest_charge=None,
        livemode=False,
        managed_payments={"enabled": False},
        metadata=metadata(params),
        next_action=None,
        on_behalf_of=params.get("on_behalf_of") or None,
        payment_method=payment_method,
        payment_method_configuration_details=None,
        payment_method_options={},
        payment_method_types=types if isinstance(types, list) else ["card"],
        processing=None,
        receipt_email=params.get("receipt_email") or None,
        review=None,
        setup_future_usage=params.get("setup_future_usage") or None,
        shipping=None,
        source=None,
        statement_descriptor=params.get("statement_descriptor") or None,
        statement_descriptor_suffix=params.get("statement_descriptor_suffix") or None,
        status="requires_confirmation" if payment_method else "requires_payment_method",
        transfer_data=None,
        transfer_group=params.get("transfer_group") or None,
    )
    intent = Intent(obj)
    intent.request = request
    INTENTS[id_] = intent
    if confirm:
        return confirm_intent(intent, params, request, check=False)
    return 200, render(intent.obj, params)


def check_payment_method(pm):
    if pm is not None and not (isinstance(pm, str) and pm.startswith("pm_")):
        raise invalid(f"No such PaymentMethod: '{pm}'", code="resource_missing", param="payment_method")


def confirm_intent(intent, params, request, check=True):
    if check:
        check_params(params, CONFIRM_PARAMS)
        check_payment_method(params.get("payment_method") or None)
    obj = intent.obj
    if obj["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise unexpected_state(
            f"You cannot confirm this PaymentIntent because it has a status of {obj['status']}.", obj
        )
    pm = params.get("payment_method") or obj["payment_method"]
    if not pm:
        raise unexpected_state(
            "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update "
            "the PaymentIntent with a payment method and then confirm it again, or confirm it again directly "
            "with a payment method.",
            obj,
        )
    if "capture_method" in params:
        obj["capture_method"] = choice(params, "capture_method", ("automatic", "automatic_async", "manual"))
    intent.request = request
    intent.return_url = params.get("return_url") or intent.return_url
    if params.get("receipt_email"):
        obj["receipt_email"] = params["receipt_email"]
    obj.update(payment_method=pm, last_payment_error=None, next_action=None)
    outcome, _, decline = CARDS.get(pm, ("ok", "4242", None))
    if outcome == "decline":
        code, decline_code, message = decline
        charge = new_charge(intent, failure=decline)
        pm_obj = payment_method_object(pm)
        error = {
            "charge": charge["id"],
            "code": code,
            "decline_code": decline_code,
            "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
            "message": message,
            "payment_method": pm_obj,
            "type": "card_error",
        }
        obj.update(status="requires_payment_method", payment_method=None, last_payment_error=error)
        raise ApiError(
            402,
            "card_error",
            message,
            code=code,
            saved=True,
            decline_code=decline_code,
            charge=charge["id"],
            payment_intent=copy.deepcopy(obj),
            payment_method=pm_obj,
        )
    if outcome == "3ds":
        obj["status"] = "requires_action"
        obj["next_action"] = {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": f"http://127.0.0.1:{PORT}/_test/3ds/{intent.id}", "return_url": intent.return_url},
        }
        return 200, render(obj, params)
    authorize(intent)
    return 200, render(obj, params)


def unexpected_state(message, obj):
    return ApiError(
        400,
        "invalid_request_error",
        message,
        code="payment_intent_unexpected_state",
        saved=True,
        payment_intent=copy.deepcopy(obj),
    )


def authorize(intent, three_d_secure=False):
    """The card is authorised: a charge, captured at once unless capture_method is manual."""
    obj = intent.obj
    charge = new_charge(intent, three_d_secure=three_d_secure)
    if obj["capture_method"] == "manual":
        obj.update(status="requires_capture", amount_capturable=obj["amount"], next_action=None)
    else:
        capture_charge(charge, obj["amount"])
        obj.update(status="succeeded", amount_received=obj["amount"], amount_capturable=0, next_action=None)
    obj["latest_charge"] = charge["id"]


def new_charge(intent, failure=None, three_d_secure=False):
    obj = intent.obj
    pm = obj["payment_method"]
    _, last4, _ = CARDS.get(pm, ("ok", "4242", None))
    charge = fixture("charge")
    id_ = new_id("ch_")
    charge.update(
        id=id_,
        amount=obj["amount"],
        amount_captured=0,
        amount_refunded=0,
        application=None,
        application_fee=None,
        application_fee_amount=None,
        balance_transaction=None,
        calculated_statement_descriptor=obj["statement_descriptor"],
        captured=False,
        created=int(time.time()),
        currency=obj["currency"],
        customer=obj["customer"],
        description=obj["description"],
        disputed=False,
        failure_balance_transaction=None,
        failure_code=None,
        failure_message=None,
        fraud_details={},
        livemode=False,
        metadata=dict(obj["metadata"]),
        on_behalf_of=None,
        paid=True,
        payment_intent=obj["id"],
        payment_method=pm,
        receipt_email=obj["receipt_email"],
        receipt_number=None,
        receipt_url=None,
        refunded=False,
        refunds={"data": [], "has_more": False, "object": "list", "url": f"/v1/charges/{id_}/refunds"},
        review=None,
        shipping=None,
        source=None,
        source_transfer=None,
        statement_descriptor=obj["statement_descriptor"],
        statement_descriptor_suffix=obj["statement_descriptor_suffix"],
        status="succeeded",
        transfer_data=None,
        transfer_group=obj["transfer_group"],
    )
    charge["billing_details"] = {
        "address": {k: None for k in charge["billing_details"]["address"]},
        "email": None,
        "name": None,
        "phone": None,
        "tax_id": None,
    }
    card = charge["payment_method_details"]["card"]
    card.update(amount_authorized=obj["amount"], last4=last4, installments=None, wallet=None)
    card["overcapture"] = {"maximum_amount_capturable": obj["amount"], "status": "unavailable"}
    card["three_d_secure"] = None
    if three_d_secure:
        card["three_d_secure"] = {
            "authentication_flow": "challenge",
            "electronic_commerce_indicator": "05",
            "exemption_indicator": None,
            "result": "authenticated",
            "result_reason": None,
            "transaction_id": new_id(""),
            "version": "2.2.0",
        }
    outcome = charge["outcome"]
    outcome.update(advice_code=None, network_advice_code=None, network_decline_code=None)
    if failure:
        code, decline_code, message = failure
        charge.update(paid=False, status="failed", failure_code=code, failure_message=message)
        card["amount_authorized"] = None
        outcome.update(
            network_status="declined_by_network",
            reason=decline_code,
            seller_message="The bank did not return any further details with this decline.",
            type="issuer_declined",
        )
    else:
        outcome.update(network_status="approved_by_network", reason=None, seller_message="Payment complete.", type="authorized")
    CHARGES[id_] = charge
    intent.obj["latest_charge"] = id_
    return charge


def capture_charge(charge, amount):
    charge.update(captured=True, amount_captured=amount, balance_transaction=new_id("txn_"))


def find_intent(id_):
    intent = INTENTS.get(id_)
    if intent is None:
        raise missing("payment_intent", id_)
    return intent


def retrieve_intent(intent, params):
    check_params(params, RETRIEVE_PARAMS)
    return 200, render(intent.obj, params)


def capture_intent(intent, params, request):
    check_params(params, CAPTURE_PARAMS)
    obj = intent.obj
    if obj["status"] != "requires_capture":
        raise unexpected_state(
            f"This PaymentIntent could not be captured because it has a status of {obj['status']}. "
            "Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
            obj,
        )
    amount = integer(params, "amount_to_capture")
    if amount is None:
        amount = obj["amount_capturable"]
    if amount > obj["amount_capturable"]:
        raise invalid(
            f"The amount to capture ({money(amount, obj['currency'])}) is greater than the amount that can be "
            f"captured ({money(obj['amount_capturable'], obj['currency'])}).",
            code="amount_too_large",
            param="amount_to_capture",
        )
    intent.request = request
    capture_charge(CHARGES[obj["latest_charge"]], amount)
    obj.update(status="succeeded", amount_received=amount, amount_capturable=0, metadata=metadata(params, obj["metadata"]))
    return 200, render(obj, params)


def cancel_intent(intent, params, request):
    check_params(params, CANCEL_PARAMS)
    obj = intent.obj
    reason = choice(
        params, "cancellation_reason", ("duplicate", "fraudulent", "requested_by_customer", "abandoned"), None
    )
    if obj["status"] in ("succeeded", "canceled"):
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of {obj['status']}. Only a PaymentIntent "
            "with one of the following statuses may be canceled: requires_payment_method, requires_capture, "
            "requires_confirmation, requires_action, processing.",
            obj,
        )
    intent.request = request
    if obj["status"] == "requires_capture":
        # the authorisation is released: Stripe shows the charge as refunded in full
        charge = CHARGES[obj["latest_charge"]]
        charge.update(refunded=True, amount_refunded=charge["amount"])
    obj.update(
        status="canceled",
        cancellation_reason=reason,
        canceled_at=int(time.time()),
        amount_capturable=0,
        next_action=None,
    )
    return 200, render(obj, params)


def create_refund(params, request):
    check_params(params, REFUND_PARAMS)
    if params.get("payment_intent"):
        intent = INTENTS.get(params["payment_intent"])
        if intent is None:
            raise missing("payment_intent", params["payment_intent"], param="payment_intent")
    elif params.get("charge"):
        charge = CHARGES.get(params["charge"])
        if charge is None:
            raise missing("charge", params["charge"], param="charge")
        intent = INTENTS[charge["payment_intent"]]
    else:
        raise invalid("One of the following params should be provided for this request: payment_intent or charge.")
    amount = integer(params, "amount")
    reason = choice(params, "reason", ("duplicate", "fraudulent", "requested_by_customer"), None)
    obj = intent.obj
    if obj["status"] != "succeeded":
        raise invalid(
            f"This PaymentIntent ({obj['id']}) does not have a successful charge to refund.",
            code="payment_intent_unexpected_state",
            saved=True,
        )
    charge = CHARGES[obj["latest_charge"]]
    left = obj["amount_received"] - charge["amount_refunded"]
    if left <= 0:
        raise invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded", saved=True)
    if amount is None:
        amount = left
    if amount > left:
        raise invalid(
            f"Refund amount ({money(amount, obj['currency'])}) is greater than unrefunded amount on charge "
            f"({money(left, obj['currency'])})",
            code="amount_too_large",
            param="amount",
            saved=True,
        )
    refund = fixture("refund")
    refund.update(
        id=new_id("re_"),
        amount=amount,
        balance_transaction=new_id("txn_"),
        charge=charge["id"],
        created=int(time.time()),
        currency=obj["currency"],
        customer=obj["customer"],
        metadata=metadata(params),
        payment_intent=obj["id"],
        payment_method=obj["payment_method"],
        reason=reason,
        receipt_number=None,
        source_transfer_reversal=None,
        status="succeeded",
        transfer_reversal=None,
    )
    REFUNDS[refund["id"]] = refund
    intent.refunds.append(refund["id"])
    intent.request = request
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
    charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
    return 200, render(refund, params)


def render(obj, params):
    """A copy of `obj` with the fields named in expand[] replaced by their objects."""
    result = copy.deepcopy(obj)
    expand = params.get("expand") or []
    for field in expand if isinstance(expand, list) else [expand]:
        value = result.get(field)
        if field in ("latest_charge", "charge") and value in CHARGES:
            result[field] = copy.deepcopy(CHARGES[value])
        elif field == "payment_intent" and value in INTENTS:
            result[field] = copy.deepcopy(INTENTS[value].obj)
        elif field == "payment_method" and isinstance(value, str):
            result[field] = payment_method_object(value)
        elif value is not None:
            raise invalid(f"This property cannot be expanded ({field}) by the Stripe test double.", param="expand")
    return result


def route(method, path, params, request):
    """Stripe's endpoints: (status, body), or raises ApiError."""
    parts = path.strip("/").split("/")
    if method == "POST" and parts == ["v1", "payment_intents"]:
        return create_intent(params, request)
    if parts[:2] == ["v1", "payment_intents"] and len(parts) in (3, 4):
        action = parts[3] if len(parts) == 4 else None
        handlers = {
            ("GET", None): lambda i: retrieve_intent(i, params),
            ("POST", "confirm"): lambda i: confirm_intent(i, params, request),
            ("POST", "capture"): lambda i: capture_intent(i, params, request),
            ("POST", "cancel"): lambda i: cancel_intent(i, params, request),
        }
        if (method, action) in handlers:
            return handlers[(method, action)](find_intent(parts[2]))
    if method == "POST" and parts == ["v1", "refunds"]:
        return create_refund(params, request)
    if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "refunds"]:
        if parts[2] not in REFUNDS:
            raise missing("refund", parts[2])
        return 200, render(REFUNDS[parts[2]], params)
    if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "charges"]:
        if parts[2] not in CHARGES:
            raise missing("charge", parts[2])
        return 200, render(CHARGES[parts[2]], params)
    if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "events"]:
        if parts[2] not in EVENTS:
            raise missing("event", parts[2])
        return 200, EVENTS[parts[2]][0]
    raise invalid(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at "
        "https://support.stripe.com/.",
        status=404,
    )


def build_event(type_, object_id, event_id):
    """An event from the fixture, with data.object the object as it is now: the payment intent
    for payment_intent.* events, its latest charge for charge.*, its latest refund for refund.*."""
    if object_id in INTENTS:
        intent = INTENTS[object_id]
    elif object_id in CHARGES:
        intent = INTENTS[CHARGES[object_id]["payment_intent"]]
    elif object_id in REFUNDS:
        intent = INTENTS[REFUNDS[object_id]["payment_intent"]]
    else:
        raise ValueError(f"no payment intent, charge or refund {object_id!r}")
    if type_.startswith(("charge.refund.", "refund.")):
        ids = [object_id] if object_id in REFUNDS else intent.refunds[-1:]
        if not ids:
            raise ValueError(f"{object_id} has no refund")
        data = REFUNDS[ids[0]]
    elif type_.startswith("charge."):
        charge_id = object_id if object_id in CHARGES else intent.obj["latest_charge"]
        if not charge_id:
            raise ValueError(f"{object_id} has no charge")
        data = CHARGES[charge_id]
    else:
        data = intent.obj
    event = fixture("event")
    event.update(
        id=event_id or new_id("evt_"),
        object="event",
        api_version=API_VERSION,
        created=int(time.time()),
        data={"object": copy.deepcopy(data)},
        livemode=False,
        pending_webhooks=1,
        request=dict(intent.request),
        type=type_,
    )
    return event


def sign(payload, secret, timestamp):
    signed = f"{timestamp}.{payload}".encode()
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def send_webhook(form):
    """POST /_test/webhook: builds (or, with a known event_id, resends) an event, signs it with
    `secret` as Stripe does and delivers it to `url`."""
    for name in ("url", "secret"):
        if not form.get(name):
            return 400, {"error": {"message": f"missing {name}"}}
    with LOCK:
        known = EVENTS.get(form.get("event_id", ""))
        if known:
            event, payload = known
        else:
            if not form.get("type") or not form.get("object_id"):
                return 400, {"error": {"message": "missing type or object_id"}}
            try:
                event = build_event(form["type"], form["object_id"], form.get("event_id"))
            except ValueError as err:
                return 400, {"error": {"message": str(err)}}
            # Stripe sends its events pretty-printed, two spaces
            payload = json.dumps(event, indent=2)
            EVENTS[event["id"]] = (event, payload)
    timestamp = int(time.time())
    mode = form.get("signature", "")
    if mode == "stale":
        timestamp -= 600  # beyond the 300 s Stripe's libraries tolerate
    signature = sign(payload, form["secret"], timestamp)
    if mode == "bad":
        signature = sign(payload, form["secret"] + "-wrong", timestamp)
    header = f"t={timestamp},v1={signature}"
    delivery = urllib.request.Request(
        form["url"],
        data=payload.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": header,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        },
    )
    answer = {"event_id": event["id"], "status": None, "payload": payload, "header": header}
    try:
        with urllib.request.urlopen(delivery, timeout=30) as response:
            answer["status"] = response.status
    except urllib.error.HTTPError as err:
        answer["status"] = err.code
    except (urllib.error.URLError, OSError) as err:
        answer["error"] = str(err)
    return 200, answer


THREE_DS_PAGE = """<!doctype html>
<html><head><title>3D Secure test authentication</title></head><body>
<h1>3D Secure 2 test authentication</h1>
<p>Payment intent {id}: {amount} {currency}</p>
<form method="post"><input type="hidden" name="redirect" value="1">
<button name="outcome" value="succeed">Complete authentication</button>
<button name="outcome" value="fail">Fail authentication</button>
</form></body></html>
"""


def three_d_secure(id_, form):
    """POST /_test/3ds/ID: the shopper completes (or fails) authentication."""
    with LOCK:
        intent = INTENTS.get(id_)
        if intent is None:
            return 404, {"error": {"message": f"No such payment_intent: '{id_}'"}}, None
        obj = intent.obj
        if obj["status"] != "requires_action":
            return 400, {"error": {"message": f"{id_} has status {obj['status']}, not requires_action"}}, None
        outcome = form.get("outcome")
        if outcome not in ("succeed", "fail"):
            return 400, {"error": {"message": "outcome must be succeed or fail"}}, None
        # no API request caused what follows: its events have request.id null, as on Stripe
        intent.request = {"id": None, "idempotency_key": None}
        if outcome == "succeed":
            authorize(intent, three_d_secure=True)
        elif outcome == "fail":
            pm = obj["payment_method"]
            obj.update(
                status="requires_payment_method",
                payment_method=None,
                next_action=None,
                last_payment_error={
                    "code": "payment_intent_authentication_failure",
                    "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
                    "message": "The provided PaymentMethod has failed authentication. You can provide "
                    "payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
                    "payment_method": payment_method_object(pm),
                    "type": "invalid_request_error",
                },
            )
        location = None
        if form.get("redirect") and intent.return_url:
            query = urlencode(
                {
                    "payment_intent": id_,
                    "payment_intent_client_secret": obj["client_secret"],
                    "redirect_status": "succeeded" if outcome == "succeed" else "failed",
                }
            )
            location = intent.return_url + ("&" if "?" in intent.return_url else "?") + query
        return 200, copy.deepcopy(obj), location


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def do_DELETE(self):
        self.handle_request()

    def read_body(self):
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    return body
                body += chunk
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def handle_request(self):
        request_id = new_id("req_", 14)
        url = urlsplit(self.path)
        path = url.path
        body = self.read_body().decode("utf-8", "replace")
        headers = {key.lower(): value for key, value in self.headers.items()}
        # the query's params and, for a POST, the form's
        bad = None
        try:
            params = parse_form(url.query + "&" + body if self.command == "POST" else url.query)
        except ApiError as err:
            params, bad = {}, err
        self.log_request_line(request_id, path, headers, params, body)

        if path.startswith("/_test/"):
            try:
                return self.test_control(request_id, path, params)
            except Exception as err:
                traceback.print_exc()
                return self.answer(500, {"error": {"message": f"The Stripe test double failed: {err!r}"}}, request_id)

        with LOCK:
            mode = FAILURES["mode"] if FAILURES["count"] > 0 else None
            if mode:
                FAILURES["count"] -= 1
        if mode == "hang":
            time.sleep(600)
            self.close_connection = True
            return
        if mode == "500":
            error = ApiError(500, "api_error", "An unknown error occurred while processing your request.")
            return self.answer(error.status, error.body, request_id)

        auth = headers.get("authorization", "")
        if not auth:
            error = invalid(
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
                status=401,
            )
            return self.answer(401, error.body, request_id, {"WWW-Authenticate": 'Basic realm="Stripe"'})
        if not re.fullmatch(r"Bearer sk_test_\S+", auth):
            shown = auth.split(" ", 1)[-1]
            error = invalid(f"Invalid API Key provided: {shown[:8]}****{shown[-4:]}", status=401)
            return self.answer(401, error.body, request_id, {"WWW-Authenticate": 'Basic realm="Stripe"'})
        if bad:
            return self.answer(bad.status, bad.body, request_id)
        if body and self.command == "POST" and not headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            error = invalid(
                "Invalid request (check that your POST content type is application/x-www-form-urlencoded). "
                "If you have any questions, we can help at https://support.stripe.com/."
            )
            return self.answer(400, error.body, request_id)

        key = headers.get("idempotency-key") if self.command == "POST" else None
        with LOCK:
            status, answer, extra = self.idempotent(key, path, params, request_id)
        self.answer(status, answer, request_id, extra)

    def idempotent(self, key, path, params, request_id):
        """Runs the request, or answers again what its Idempotency-Key first answered."""
        if key is not None:
            if len(key) > 255:
                error = invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key")
                return error.status, error.body, None
            first = IDEMPOTENCY.get(key)
            if first is not None:
                if (first["method"], first["path"], first["params"]) != (self.command, path, params):
                    error = ApiError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{key}' if you meant to execute a "
                        "different request.",
                    )
                    return error.status, error.body, None
                replay = {"Idempotent-Replayed": "true", "Original-Request": first["request_id"]}
                return first["status"], first["body"], replay
        try:
            status, answer = route(self.command, path, params, {"id": request_id, "idempotency_key": key})
            saved = True
        except ApiError as err:
            status, answer, saved = err.status, err.body, err.saved
        except Exception as err:
            # a bug in the double: say so, and remember nothing
            traceback.print_exc()
            error = ApiError(500, "api_error", f"The Stripe test double failed: {err!r}")
            return error.status, error.body, None
        if key is not None and saved:
            IDEMPOTENCY[key] = {
                "method": self.command,
                "path": path,
                "params": params,
                "status": status,
                "body": answer,
                "request_id": request_id,
            }
        return status, answer, None

    def test_control(self, request_id, path, form):
        parts = path.strip("/").split("/")
        if parts[:2] == ["_test", "3ds"] and len(parts) == 3:
            if self.command == "GET":
                with LOCK:
                    intent = INTENTS.get(parts[2])
                    if intent is None:
                        return self.answer(404, {"error": {"message": f"No such payment_intent: '{parts[2]}'"}}, request_id)
                    page = THREE_DS_PAGE.format(**intent.obj).encode()
                return self.answer(200, page, request_id, content_type="text/html; charset=utf-8")
            status, answer, location = three_d_secure(parts[2], form)
            if location:
                return self.answer(303, answer, request_id, {"Location": location})
            return self.answer(status, answer, request_id)
        if self.command == "POST" and parts == ["_test", "fail"]:
            count = form.get("count") or "1"
            if form.get("mode") not in ("500", "hang") or not count.isdigit():
                return self.answer(400, {"error": {"message": "mode must be 500 or hang, count a number"}}, request_id)
            with LOCK:
                FAILURES.update(mode=form["mode"], count=int(count))
                failures = dict(FAILURES)
            return self.answer(200, failures, request_id)
        if self.command == "POST" and parts == ["_test", "webhook"]:
            status, answer = send_webhook(form)
            return self.answer(status, answer, request_id)
        if self.command == "GET" and parts == ["_test", "state"]:
            with LOCK:
                state = copy.deepcopy(
                    {
                        "payment_intents": [i.obj for i in INTENTS.values()],
                        "charges": list(CHARGES.values()),
                        "refunds": list(REFUNDS.values()),
                        "events": [event for event, _ in EVENTS.values()],
                        "failures": FAILURES,
                    }
                )
            return self.answer(200, state, request_id)
        if self.command == "POST" and parts == ["_test", "reset"]:
            with LOCK:
                for table in (INTENTS, CHARGES, REFUNDS, EVENTS, IDEMPOTENCY):
                    table.clear()
                FAILURES.update(mode=None, count=0)
            return self.answer(200, {"reset": True}, request_id)
        return self.answer(404, {"error": {"message": f"no test control {self.command} {path}"}}, request_id)

    def answer(self, status, body, request_id, headers=None, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body, indent=2).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", request_id)
        self.send_header("Stripe-Version", self.headers.get("stripe-version") or API_VERSION)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_request_line(self, request_id, path, headers, params, body):
        record = {
            "at": time.time(),
            "request_id": request_id,
            "method": self.command,
            "path": path,
            "headers": headers,
            "params": params,
            "body": body,
        }
        with LOG_LOCK, open(FOLDER / "requests.log", "a") as log:
            log.write(json.dumps(record) + "\n")

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # the default backlog of 5 resets connections when many requests arrive at once
    request_queue_size = 128


FOLDER.mkdir(parents=True, exist_ok=True)
Server(("127.0.0.1", PORT), Handler).serve_forever()
