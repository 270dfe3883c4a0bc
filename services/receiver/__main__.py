from services.receiver.app import create_app
from services.receiver.config import Settings
from shared.runner import run_http_service


def main() -> None:
    settings = Settings.from_env()
    run_http_service(
        "receiver", settings.log_level, lambda: create_app(settings), settings.receiver_host, settings.receiver_port,
        keepalive_timeout_s=settings.idle_timeout_s,
    )


if __name__ == "__main__":
    main()
