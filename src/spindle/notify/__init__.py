"""Notifications (docs/notifications.md): who is told what when a run or run group changes
(``events``), the outbox written with the state change (``outbox``), subscriptions and the
in-app inbox (``store``), the dispatcher that sends deliveries (``claim``, ``dispatcher``)
through channels (``channels``, ``render``), and the service the API calls (``service``).

Nothing here imports ``spindle.runs``: the lifecycle imports ``outbox`` (the arrow runs
runs → notify), so this package reads the run tables itself."""
