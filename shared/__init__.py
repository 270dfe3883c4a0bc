"""Code the three services share: config, models, provider schemes, Redis and RabbitMQ access."""
