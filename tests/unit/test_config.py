import pytest

import config as settings
from shop import create_app


def test_an_unset_shop_env_means_production(monkeypatch):
    monkeypatch.delenv("SHOP_ENV", raising=False)
    assert isinstance(settings.load(), settings.ProductionConfig)


REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "SHOP_BASE_URL",
    "SMTP_URL",
    "SHOP_CERTIFICATE_KEY",
)


def test_production_refuses_to_start_and_names_every_missing_setting(monkeypatch):
    for name in REQUIRED_IN_PRODUCTION:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError) as error:
        create_app("production")
    for name in REQUIRED_IN_PRODUCTION:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("name", "value", "meaning"),
    [
        ("SHOP_HOLD_MINUTES", "ten", "a whole number"),
        ("STRIPE_READ_TIMEOUT", "soon", "a number of seconds"),
        ("SHOP_REQUIRE_VERIFIED_EMAIL", "maybe", "on or off (1/0)"),
    ],
)
def test_a_setting_the_shop_cannot_read_stops_it_and_says_why(monkeypatch, name, value, meaning):
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError) as error:
        settings.DevelopmentConfig()
    assert str(error.value) == f"{name} must be {meaning}, got {value!r}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("On", True), ("yes", True), ("0", False), ("OFF", False), ("", False)],
)
def test_a_flag_reads_the_usual_words_and_falls_back_when_empty(monkeypatch, value, expected):
    monkeypatch.setenv("SHOP_REQUIRE_VERIFIED_EMAIL", value)
    assert settings.DevelopmentConfig().SHOP_REQUIRE_VERIFIED_EMAIL is expected


def test_numbers_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOP_HOLD_MINUTES", "15")
    monkeypatch.setenv("STRIPE_READ_TIMEOUT", "2.5")
    config = settings.DevelopmentConfig()
    assert (config.SHOP_HOLD_MINUTES, config.STRIPE_READ_TIMEOUT) == (15, 2.5)


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


def test_images_are_kept_in_the_database_unless_a_bucket_is_configured(monkeypatch):
    assert settings.load("development").SHOP_IMAGE_STORE == "database"
    monkeypatch.setenv("SHOP_IMAGE_STORE", "s3")
    monkeypatch.setenv("SHOP_S3_BUCKET", "smallbatch-images")
    monkeypatch.setenv("SHOP_S3_ENDPOINT_URL", "https://s3.example.net")

    config = settings.load("development")

    assert config.SHOP_IMAGE_STORE == "s3" and config.SHOP_S3_BUCKET == "smallbatch-images"
    assert config.SHOP_S3_PREFIX == "images/"


def test_an_s3_image_store_without_a_bucket_stops_the_start_and_names_the_setting(monkeypatch):
    monkeypatch.setenv("SHOP_IMAGE_STORE", "s3")

    with pytest.raises(RuntimeError, match="SHOP_IMAGE_STORE=s3 needs SHOP_S3_BUCKET"):
        settings.load("development")


def test_an_unknown_image_store_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("SHOP_IMAGE_STORE", "nfs")

    with pytest.raises(RuntimeError, match="SHOP_IMAGE_STORE must be one of database, s3"):
        settings.load("development")
