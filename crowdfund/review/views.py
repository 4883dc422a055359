"""Operator review queue: approve, request changes, reject."""

from flask import Blueprint

bp = Blueprint("review", __name__, url_prefix="/operator")
