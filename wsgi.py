"""The one module-level app: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``; the process
entry point, so it also sets up the process's logging (shop/logs.py)."""

from shop import create_app, logs

app = create_app()
logs.configure(app.config)
