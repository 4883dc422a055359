"""Domain errors: what a user can cause, with a message to show and a stable code.

Every stable code is a member of `ErrorCode`, which also says the HTTP status the JSON
API answers with. Services raise a `DomainError` subclass naming one code; views turn it
into a flash message or, in the API, into `{"error": {"code": …, "message": …}}`. The
OpenAPI document and the README's list of codes are generated from this enum (and a
test holds them to it).

Nothing stores an English sentence as the only record of a failure: store the code and
its `params`, and render the sentence with `describe(code, params)` when showing it.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """Every stable error code, with its HTTP status and a sentence to show by default."""

    def __new__(cls, value: str, status: int = 422, text: str = ""):
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.text = text
        return member

    # generic
    ERROR = "error", 422, "Something is not right with that request."
    VALIDATION_ERROR = "validation_error", 422, "Some of what was entered is not valid."
    NOT_FOUND = "not_found", 404, "We could not find that."
    FORBIDDEN = "forbidden", 403, "You are not allowed to do that."
    CONFLICT = "conflict", 409, "That is not possible in the current state."
    INVALID_TRANSITION = "invalid_transition", 409, "That change of state is not allowed."
    BAD_JSON = "bad_json", 400, "The request body must be a JSON object."
    BAD_REQUEST = "bad_request", 400, "The request could not be understood."
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "That method is not allowed here."
    AUTHENTICATION_REQUIRED = "authentication_required", 401, "Log in or send a valid API token."
    UNAUTHORIZED = "unauthorized", 401, "Send a valid API token as 'Authorization: Bearer hf_…'."
    REQUEST_TOO_LARGE = "request_too_large", 413, "The request is too large."
    RATE_LIMITED = "rate_limited", 429, "Too many attempts. Please wait a minute and try again."
    INTERNAL_ERROR = "internal_error", 500, "An unexpected error happened; please try again."
    IDEMPOTENCY_CONFLICT = "idempotency_conflict", 409, "That key was already used for a different request."
    # accounts and organisations
    EMAIL_REQUIRED = "email_required", 422, "Enter an e-mail address."
    EMAIL_INVALID = "email_invalid", 422, "Enter a valid e-mail address."
    EMAIL_TAKEN = "email_taken", 409, "That e-mail address cannot be used."
    REQUIRED = "required", 422, "This field is required."
    TOO_LONG = "too_long", 422, "This is too long."
    TEXT_INVALID = "text_invalid", 422, "This contains characters we cannot accept."
    NAME_REQUIRED = "name_required", 422, "Enter a name."
    NAME_TOO_LONG = "name_too_long", 422, "The name is too long."
    PASSWORD_TOO_SHORT = "password_too_short", 422, "The password is too short."
    PASSWORD_TOO_LONG = "password_too_long", 422, "The password is too long."
    PASSWORD_UNCHANGED = "password_unchanged", 422, "Choose a password different from the current one."
    WRONG_PASSWORD = "wrong_password", 422, "The current password is not right."
    BAD_ROLE = "bad_role", 422, "That role does not exist."
    TYPE_INVALID = "type_invalid", 422, "Choose one of the listed types."
    COUNTRY_INVALID = "country_invalid", 422, "Choose one of the listed countries."
    WEBSITE_INVALID = "website_invalid", 422, "Enter a web address starting with https://."
    DESCRIPTION_REQUIRED = "description_required", 422, "Enter a description."
    DESCRIPTION_TOO_LONG = "description_too_long", 422, "The description is too long."
    STATUS_INVALID = "status_invalid", 422, "That status does not exist."
    # campaigns and drafting
    DRAFT_INVALID = "draft_invalid", 422, "The draft is not complete yet."
    NOT_EDITABLE = "not_editable", 409, "This campaign can no longer be edited."
    NOT_SUBMITTED = "not_submitted", 409, "This campaign is not waiting for review."
    NOT_REWARD = "not_reward", 409, "Only reward campaigns have reward tiers."
    TOO_MANY_TIERS = "too_many_tiers", 422, "This campaign has as many rewards as it can."
    END_PASSED = "end_passed", 409, "The campaign's end date has passed."
    IMAGE_MISSING = "image_missing", 422, "Choose an image."
    IMAGE_EMPTY = "image_empty", 422, "The file is empty."
    IMAGE_INVALID = "image_invalid", 422, "The file is not a JPEG, PNG or WebP image."
    IMAGE_TOO_LARGE = "image_too_large", 422, "The image is too large."
    IMAGE_TOO_SMALL = "image_too_small", 422, "The image is too small."
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels", 422, "The image has too many pixels."
    IMAGE_HAS_MARKUP = "image_has_markup", 422, "The file contains markup and is refused."
    # pledges
    CAMPAIGN_CLOSED = "campaign_closed", 409, "This campaign takes no more pledges."
    CAMPAIGN_NOT_OPEN = "campaign_not_open", 409, "This campaign is not open for pledges."
    SOLD_OUT = "sold_out", 409, "That reward is sold out."
    OVER_MAXIMUM = "over_maximum", 409, "That would pass the round's maximum."
    BELOW_MINIMUM = "below_minimum", 422, "The amount is below the minimum."
    LIMIT_EXCEEDED = "limit_exceeded", 409, "That would pass your 12-month investment limit."
    INVESTOR_PROFILE_REQUIRED = "investor_profile_required", 422, "Fill in your investor profile first."
    INVALID_TIER = "invalid_tier", 422, "Choose one of this campaign's rewards."
    WRONG_CURRENCY = "wrong_currency", 422, "Enter the amount in the campaign's currency."
    NOT_CHANGEABLE = "not_changeable", 409, "This pledge can no longer be changed."
    CANCELLATION_CLOSED = "cancellation_closed", 409, "This pledge can no longer be cancelled."
    OVER_CAMPAIGN_CAP = "over_campaign_cap", 409, "That would pass this appeal's maximum."
    # payments
    PAYMENT_METHOD_REQUIRED = "payment_method_required", 422, "Add or choose a card."
    PAYMENT_DECLINED = "payment_declined", 402, "Your card was declined; try another card."
    REQUIRES_ACTION = "requires_action", 402, "Your bank needs you to confirm this payment."
    CARD_DECLINED = "card_declined", 402, "Your card was declined; try another card."
    INVALID_NUMBER = "invalid_number", 422, "That card number is not valid."
    INVALID_EXPIRY = "invalid_expiry", 422, "Write the expiry date as MM/YY."
    INVALID_CVC = "invalid_cvc", 422, "The security code is the 3 or 4 digits on your card."
    INCORRECT_CVC = "incorrect_cvc", 422, "The security code is not right."
    EXPIRED_CARD = "expired_card", 422, "This card has expired."
    INSUFFICIENT_FUNDS = "insufficient_funds", 422, "Your card has insufficient funds."
    SETUP_MISSING = "setup_missing", 422, "The card form was not completed; enter your card again."
    SETUP_MISMATCH = "setup_mismatch", 422, "That card form belongs to someone else."
    CARD_MISSING = "card_missing", 422, "This card is no longer saved; add it again."
    CARD_REMOVED = "card_removed", 422, "That card was removed."
    CARD_OTHER_GATEWAY = "card_other_gateway", 422, "That card belongs to another payment service."
    OTHER_GATEWAY = "other_gateway", 409, "That belongs to another payment service."
    NOT_SANDBOX = "not_sandbox", 409, "Only possible with the sandbox gateway."
    NO_PAYMENT_METHOD = "no_payment_method", 422, "There is no card to charge."
    NO_DESTINATION = "no_destination", 422, "The organisation has no payout account yet."
    NOT_REFUNDABLE = "not_refundable", 409, "That payment cannot be refunded."
    REFUND_TOO_LARGE = "refund_too_large", 409, "That is more than is left to refund."
    PAYOUT_TOO_LARGE = "payout_too_large", 409, "That is more than the organisation is owed."
    ESCROW_INSUFFICIENT = "escrow_insufficient", 409, "The campaign's escrow does not hold that much."
    GATEWAY_UNAVAILABLE = "gateway_unavailable", 409, "The payment service is not answering; try again soon."
    RESOURCE_MISSING = "resource_missing", 404, "The payment service does not know that object."
    FAILED = "failed", 402, "The payment failed."
    GATEWAY_CONFIGURATION = (
        "gateway_configuration",
        503,
        "The payment service is not set up correctly; the site's operators have been told.",
    )
    INVALID_SIGNATURE = "invalid_signature", 400, "The request is not a correctly signed, recent event."
    # ledger
    LEDGER_ERROR = "ledger_error", 409, "The ledger refused that transaction."
    LEDGER_UNBALANCED = "ledger_unbalanced", 409, "Debits and credits must balance."
    LEDGER_INSUFFICIENT_FUNDS = "ledger_insufficient_funds", 409, "The account does not hold that much."
    LEDGER_IDEMPOTENCY_CONFLICT = (
        "ledger_idempotency_conflict",
        409,
        "That ledger key was already used for a different transaction.",
    )
    LEDGER_ALREADY_REVERSED = "ledger_already_reversed", 409, "That transaction was already reversed."
    LEDGER_CURRENCY = "ledger_currency", 409, "The legs must use the accounts' currency."
    LEDGER_SIDE = "ledger_side", 409, "A leg is a debit or a credit."
    LEDGER_OWNER = "ledger_owner", 409, "That account needs an owner."
    LEDGER_KIND = "ledger_kind", 409, "That is not a kind of ledger transaction."
    LEDGER_KEY = "ledger_key", 409, "A ledger transaction needs a key."
    LEDGER_AMOUNT = "ledger_amount", 409, "A leg's amount must be positive."
    LEDGER_ACCOUNT = "ledger_account", 409, "That is not a ledger account."
    LEDGER_FORBIDDEN_MOVEMENT = (
        "ledger_forbidden_movement",
        409,
        "Money may not move between those accounts.",
    )
    LEDGER_APPEND_ONLY = (
        "ledger_append_only",
        409,
        "Ledger history is append-only: post a reversing transaction instead.",
    )
    IDEMPOTENCY_KEY = "idempotency_key", 422, "Send an idempotency key of at most 200 characters."
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", 409, "That idempotency key was used already."
    AMOUNT = "amount", 422, "Enter an amount."
    CAMPAIGN = "campaign", 422, "Choose a campaign."
    # settlement
    SETTLEMENT_STARTED = (
        "settlement_started",
        409,
        "The campaign has closed and its pledges are being settled: this pledge can no longer be "
        "changed or cancelled.",
    )
    HARD_DECLINED = (
        "hard_declined",
        402,
        "Your bank refused this card for good (lost, stolen or not to be tried again); change your "
        "card and retry.",
    )
    NOT_FUNDED = "not_funded", 409, "Not funded — you were not charged."
    PLEDGE_DROPPED = (
        "pledge_dropped",
        409,
        "The payment could not be collected within the grace period: the pledge was dropped and "
        "nothing was charged.",
    )
    ROUND_BELOW_MINIMUM = (
        "round_below_minimum",
        409,
        "The round fell below its minimum once unpaid commitments were dropped: every payment is refunded.",
    )
    CAMPAIGN_CANCELLED = "campaign_cancelled", 409, "The campaign was cancelled: every payment is refunded."
    NOTHING_TO_PAY = "nothing_to_pay", 409, "This pledge has nothing to pay now."
    NOT_CANCELLABLE = "not_cancellable", 409, "This campaign can no longer be cancelled."
    # equity (shares, cap table, reconfirmation) and donation receipts
    ROUND_NOT_AMENDABLE = (
        "round_not_amendable",
        409,
        "Only the terms of a live equity round can be amended.",
    )
    AMENDMENT_UNCHANGED = "amendment_unchanged", 422, "Nothing in the terms changed."
    AMENDMENT_TOO_LATE = (
        "amendment_too_late",
        409,
        "Investors must be able to reconfirm before commitments close: amend the terms earlier.",
    )
    NOT_RECONFIRMED = (
        "not_reconfirmed",
        409,
        "The terms of “{campaign}” changed and you did not reconfirm by {deadline}: your commitment "
        "was cancelled and nothing was charged.",
    )
    RECONFIRMATION_CLOSED = (
        "reconfirmation_closed",
        409,
        "This commitment has no reconfirmation waiting for an answer.",
    )
    # loans and repayments
    LOAN_NOT_FOUND = "loan_not_found", 404, "We could not find that loan."
    LOAN_CLOSED = "loan_closed", 409, "This loan has been repaid in full: there is nothing left to repay."
    REPAYMENT_AMOUNT = (
        "repayment_amount",
        422,
        "Enter an amount between {minimum} and what is still owed ({outstanding}).",
    )
    REPAYMENT_CURRENCY = "repayment_currency", 422, "Repay this loan in {currency}."
    REPAYMENT_DUPLICATE = (
        "repayment_duplicate",
        409,
        "This repayment was already sent (repayment {number}); it was not taken twice.",
    )
    BANK_TRANSFER_SANDBOX_ONLY = (
        "bank_transfer_sandbox_only",
        409,
        "Bank transfers are recorded by hand only in sandbox mode.",
    )
    REPAYMENT_NOT_REVERSIBLE = (
        "repayment_not_reversible",
        409,
        "Only a repayment received and shared among the lenders can be reversed.",
    )
    # patient aid: hospitals, tranches, reports, surplus
    HOSPITAL_NOT_FOUND = "hospital_not_found", 404, "We could not find that hospital."
    HOSPITAL_DUPLICATE = (
        "hospital_duplicate",
        409,
        "A hospital with licence number {licence} is registered already.",
    )
    HOSPITAL_NOT_VERIFIED = (
        "hospital_not_verified",
        409,
        "Choose a hospital HealthFund has verified, with a payout account that can receive money.",
    )
    NOT_PATIENT_AID = "not_patient_aid", 409, "Only a patient-aid appeal pays hospitals in tranches."
    APPEAL_NOT_SETTLED = (
        "appeal_not_settled",
        409,
        "Tranches can be requested once the appeal has closed and its donations are settled.",
    )
    APPEAL_ENDED = (
        "appeal_ended",
        409,
        "This appeal has ended: what was left is returned to the donors.",
    )
    TRANCHE_ABOVE_HELD = (
        "tranche_above_held",
        409,
        "The appeal holds {held} not yet promised to the hospital; a tranche of {amount} is more than that.",
    )
    TRANCHE_ABOVE_INVOICE = (
        "tranche_above_invoice",
        422,
        "A tranche can pay at most the invoice's total ({total}).",
    )
    INVOICE_OTHER_HOSPITAL = (
        "invoice_other_hospital",
        422,
        "The invoice is from another hospital than the one this tranche pays: a tranche is paid only "
        "to the hospital that issued the invoice.",
    )
    INVOICE_ITEMS = (
        "invoice_items",
        422,
        "List the invoice's items: a description and an amount on each line.",
    )
    INVOICE_FILE_MISSING = "invoice_file_missing", 422, "Attach the hospital's invoice (PDF or photo)."
    INVOICE_FILE_TOO_LARGE = "invoice_file_too_large", 413, "The invoice file is too large."
    INVOICE_FILE_INVALID = (
        "invoice_file_invalid",
        422,
        "That file is neither a PDF nor a JPEG, PNG or WebP photo of the invoice.",
    )
    TRANCHE_DUPLICATE = (
        "tranche_duplicate",
        409,
        "This tranche request was already sent (tranche {number}); it was not recorded twice.",
    )
    TRANCHE_NOT_FOUND = "tranche_not_found", 404, "We could not find that tranche."
    TRANCHE_STATE = "tranche_state", 409, "This tranche is {state}: it cannot be {action} now."
    REJECTION_REASON = "rejection_reason", 422, "Give the reason for the rejection (up to 1,000 characters)."
    REPORT_CLOSED = (
        "report_closed",
        409,
        "Problems can be reported only while a tranche is in public notice.",
    )
    REPORT_DUPLICATE = (
        "report_duplicate",
        409,
        "You have already reported this tranche; an operator will look at it.",
    )
    REPORT_REASON = "report_reason", 422, "Say what the problem is (up to 1,000 characters)."
    TRANCHES_OPEN = (
        "tranches_open",
        409,
        "Some tranches are not finished yet: wait until they are paid, or have them rejected, before "
        "ending the appeal.",
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


class NoticeCode(enum.StrEnum):
    """What a person is told that is not an error (shares issued, a loan in default …): a
    stored code and parameters, rendered with `describe` like an error code."""

    def __new__(cls, value: str, text: str = ""):
        member = str.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member

    RECONFIRM_REQUESTED = (
        "reconfirm_requested",
        "The terms of “{campaign}” changed: reconfirm your commitment by {deadline} or it will be cancelled.",
    )
    RECONFIRM_DECLINED = (
        "reconfirm_declined",
        "You declined the new terms of “{campaign}”: your commitment was cancelled and nothing was charged.",
    )
    SHARES_ISSUED = (
        "shares_issued",
        "{shares} shares of {issuer} were issued to you (certificate {certificate}).",
    )
    LOAN_DEFAULTED = (
        "loan_defaulted",
        "The loan to {borrower} is in default; anything recovered will be shared among the lenders as received.",
    )
    REPAYMENT_REVERSED = (
        "repayment_reversed",
        "A repayment of {amount} by {borrower} was reversed; your share of it was taken back.",
    )


def markdown_table() -> str:
    """Every code with its HTTP status and default sentence, as the README's Markdown table."""
    rows = [f"| `{code.value}` | {code.status} | {_cell(code.text)} |" for code in ErrorCode]
    return "\n".join(["| Code | HTTP status | Meaning |", "| --- | --- | --- |", *rows]) + "\n"


def describe(code: str | ErrorCode | NoticeCode | None, params: dict[str, Any] | None = None) -> str:
    """The sentence for a stored error or notice code (unknown codes get the generic one)."""
    member: ErrorCode | NoticeCode = ErrorCode.ERROR
    if code in NoticeCode._value2member_map_:
        member = NoticeCode(code)
    elif code in ErrorCode._value2member_map_:
        member = ErrorCode(code)
    text = member.text
    if params:
        with contextlib.suppress(KeyError, IndexError, ValueError):
            text = text.format(**params)
    return text


class DomainError(Exception):
    """Something a user caused: a message to show, a stable `code`, its HTTP `status`."""

    code: ErrorCode = ErrorCode.ERROR

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.code = ErrorCode(cls.code)  # a subclass names a registered code

    def __init__(
        self,
        message: str | None = None,
        code: ErrorCode | str | None = None,
        field: str | None = None,
        params: dict[str, Any] | None = None,
    ):
        if code is not None:
            self.code = ErrorCode(code)  # an unregistered code is a programming error
        self.message = message or describe(self.code, params)
        super().__init__(self.message)
        #: The form field the message belongs to, when there is one.
        self.field = field
        #: Values the message was built from (for stored records and translations).
        self.params = dict(params or {})

    @property
    def status(self) -> int:
        return self.code.status


class ValidationError(DomainError):
    code = ErrorCode.VALIDATION_ERROR


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class Forbidden(DomainError):
    code = ErrorCode.FORBIDDEN


class Conflict(DomainError):
    """The request is valid but the current state refuses it (sold out, closed, …)."""

    code = ErrorCode.CONFLICT
