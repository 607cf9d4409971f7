"""Small Batch: a storefront for limited, numbered releases.

``create_app`` binds extensions, blueprints, error handlers and commands. It does no I/O:
no migrations, no network, no files written.
"""

from __future__ import annotations

from flask import Flask

import config as settings


def create_app(config: settings.Config | str | None = None, **overrides: object) -> Flask:
    """Build the app from a settings object, an environment name, or ``SHOP_ENV``."""
    if not isinstance(config, settings.Config):
        config = settings.load(config)
    missing = config.missing()
    if missing:
        raise RuntimeError(
            f"Small Batch ({config.ENV_NAME}) cannot start; set these environment variables: "
            + ", ".join(missing)
        )

    app = Flask(
        __name__,
        template_folder=str(settings.BASE_DIR / "templates"),
        static_folder=str(settings.BASE_DIR / "static"),
        instance_path=str(settings.BASE_DIR / "instance"),
    )
    app.config.from_object(config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = config.engine_options()
    app.config.update(overrides)

    from shop import fast_path, logs, metrics, security

    security.check_production_settings(app)
    register_extensions(app)
    register_blueprints(app)
    register_templating(app)
    fast_path.install(app)  # inside ProxyFix, which security.register may put around it
    security.register(app)
    logs.init_app(app)
    metrics.init_app(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    import shop.models  # noqa: F401 - the models must be known to Flask-Migrate
    from shop import auth
    from shop.extensions import csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(settings.BASE_DIR / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    auth.configure_login(login_manager)

    from shop import database, passwords

    database.configure_engine(app)
    passwords.init_app(app)


def register_blueprints(app: Flask) -> None:
    from shop.account.views import bp as account
    from shop.checkout.views import bp as checkout
    from shop.maker import bp as maker
    from shop.notify.views import bp as notify
    from shop.operator.views import bp as operator
    from shop.ops.views import bp as ops
    from shop.payments.views import bp as payments
    from shop.queue.views import bp as queue
    from shop.storefront import waitlist_views  # noqa: F401 - its routes join the storefront's
    from shop.storefront.views import bp as storefront

    app.register_blueprint(storefront)
    app.register_blueprint(account)
    app.register_blueprint(checkout)
    app.register_blueprint(maker)
    app.register_blueprint(payments)
    app.register_blueprint(notify)
    app.register_blueprint(operator)
    app.register_blueprint(ops)
    app.register_blueprint(queue)
    if app.config.get("ENV_NAME") == "development":
        from shop.dev.views import bp as dev

        app.register_blueprint(dev)  # the local mailbox; 404 in every other environment


def register_templating(app: Flask) -> None:
    from shop import templating

    templating.register(app)


def register_error_handlers(app: Flask) -> None:
    from shop import errors

    errors.register_error_handlers(app)


def register_commands(app: Flask) -> None:
    from shop import cli

    app.cli.add_command(cli.shop)
