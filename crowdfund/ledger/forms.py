"""Forms for the operator's ledger pages."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Regexp


class KeySearchForm(FlaskForm):
    """Find a transaction by its idempotency key (a GET form: it changes nothing)."""

    class Meta:
        csrf = False

    key = StringField(
        "Idempotency key",
        validators=[
            DataRequired(),
            Length(max=200),
            Regexp(r"^[^\x00-\x1f]*$", message="Keys have no control characters."),
        ],
    )
