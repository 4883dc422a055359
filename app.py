"""Entry point: `flask --app app run`, `gunicorn app:app`."""

from crowdfund import create_app

app = create_app()
