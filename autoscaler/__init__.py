"""The Knative Pod Autoscaler: config, windows, the decider, collection, replay."""

__all__: list[str] = []
