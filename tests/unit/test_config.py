import pytest

import config as settings
from shop import create_app


def test_an_unset_shop_env_means_production(monkeypatch):
    monkeypatch.delenv("SHOP_ENV", raising=False)
    assert isinstance(settings.load(), settings.ProductionConfig)


def test_production_refuses_to_start_and_names_every_missing_setting(monkeypatch):
    for name in (
        "SECRET_KEY",
        "DATABASE_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SHOP_BASE_URL",
        "SMTP_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError) as error:
        create_app("production")
    for name in (
        "SECRET_KEY",
        "DATABASE_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SHOP_BASE_URL",
        "SMTP_URL",
    ):
        assert name in str(error.value)


def test_development_needs_no_settings(monkeypatch):
    for name in ("SECRET_KEY", "DATABASE_URL", "STRIPE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    app = create_app("development")
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.config["STRIPE_API_BASE"].startswith("http://127.0.0.1")


def test_an_unknown_shop_env_is_a_clear_error():
    with pytest.raises(RuntimeError, match="SHOP_ENV='staging'"):
        settings.load("staging")


def test_plain_postgres_urls_use_the_psycopg_driver(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/shop")
    assert settings.ProductionConfig().SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://u:p@db/shop"


def test_production_password_hashing_is_argon2id_with_at_least_64_mib():
    config = settings.ProductionConfig
    assert config.SHOP_PASSWORD_MEMORY_COST >= 65536
    assert config.SHOP_PASSWORD_TIME_COST >= 2


def test_a_process_hashes_two_passwords_at_once_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("SHOP_PASSWORD_CONCURRENCY", raising=False)
    monkeypatch.delenv("SHOP_PASSWORD_WAIT_SECONDS", raising=False)
    assert settings.DevelopmentConfig().SHOP_PASSWORD_CONCURRENCY == 2
    assert settings.DevelopmentConfig().SHOP_PASSWORD_WAIT_SECONDS == 1.0
    monkeypatch.setenv("SHOP_PASSWORD_CONCURRENCY", "4")
    assert settings.DevelopmentConfig().SHOP_PASSWORD_CONCURRENCY == 4


def test_no_hashing_slot_at_all_is_refused_at_start():
    with pytest.raises(RuntimeError, match="SHOP_PASSWORD_CONCURRENCY"):
        create_app("development", SHOP_PASSWORD_CONCURRENCY=0)
