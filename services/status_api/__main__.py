import logging

from services.status_api.app import create_app
from services.status_api.config import Settings
from shared.logs import setup_logging
from shared.runner import run_http_service


def main() -> None:
    settings = Settings.from_env()
    setup_logging("status_api", settings.log_level)  # so the warnings below are JSON lines too
    if settings.uses_dev_token:
        logging.getLogger(__name__).warning(
            "STATUS_API_TOKEN is not set: using the development token; set it in production"
        )
    if settings.uses_dev_signing_key:
        logging.getLogger(__name__).warning(
            "TOKEN_SIGNING_KEY is not set: browser tokens are signed with the development key; set it in production"
        )
    run_http_service(
        "status_api",
        settings.log_level,
        lambda: create_app(settings),
        settings.status_api_host,
        settings.status_api_port,
    )


if __name__ == "__main__":
    main()
