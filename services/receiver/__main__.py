from aiohttp import web

from services.receiver.app import create_app, with_admin_listener
from services.receiver.config import Settings
from shared.runner import run_http_service, run_workers


def serve() -> None:
    settings = Settings.from_env()
    reuse_port = settings.receiver_workers > 1

    def make_app() -> web.Application:
        return with_admin_listener(create_app(settings), settings.receiver_admin_host, settings.receiver_admin_port,
                                   reuse_port)

    run_http_service(
        "receiver", settings.log_level, make_app, settings.receiver_host, settings.receiver_port,
        keepalive_timeout_s=settings.idle_timeout_s, reuse_port=reuse_port,
    )


def main() -> None:
    workers = Settings.from_env().receiver_workers
    if workers > 1:  # RECEIVER_WORKERS processes share the port (SO_REUSEPORT)
        run_workers(workers, serve)
    else:
        serve()


if __name__ == "__main__":
    main()
