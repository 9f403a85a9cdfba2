"""Kafka: ``config`` builds every client's librdkafka settings (source, dead letters and the
``confusion-produce`` tool) and masks secrets; ``source`` reads records in batches; ``dead_letters``
writes rejected records back to a topic. Import the module you need: this file imports nothing,
so the producer tool does not pay for Bytewax."""
