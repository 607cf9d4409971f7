"""The one module-level app: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

from shop import create_app

app = create_app()
