from services.receiver.app import create_app
from services.receiver.config import Settings
from shared.runner import run_http_service, run_workers


def serve() -> None:
    settings = Settings.from_env()
    run_http_service(
        "receiver", settings.log_level, lambda: create_app(settings), settings.receiver_host, settings.receiver_port,
        keepalive_timeout_s=settings.idle_timeout_s, reuse_port=settings.receiver_workers > 1,
    )


def main() -> None:
    workers = Settings.from_env().receiver_workers
    if workers > 1:  # RECEIVER_WORKERS processes share the port (SO_REUSEPORT)
        run_workers(workers, serve)
    else:
        serve()


if __name__ == "__main__":
    main()
