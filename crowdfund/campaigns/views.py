"""Campaign drafting for campaigners: create, edit, preview, submit."""

from flask import Blueprint

bp = Blueprint("campaigns", __name__)
