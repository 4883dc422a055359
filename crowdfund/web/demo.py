"""`flask demo seed`: demo users, organisations and campaigns of all four kinds."""

from flask.cli import AppGroup

demo_cli = AppGroup("demo", help="Demo data.")
