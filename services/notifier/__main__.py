from services.notifier.app import run
from services.notifier.config import Settings
from shared.runner import run_coroutine_service


def main() -> None:
    settings = Settings.from_env()
    run_coroutine_service("notifier", settings.log_level, lambda: run(settings))


if __name__ == "__main__":
    main()
