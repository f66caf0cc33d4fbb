"""`cordon demo` and `cordon load`: a day in a real street, and the same traffic as a load tool.

Everything they do goes through Cordon's public message API: JSON requests on
``cordon.cmd.<service>.<command>`` and ``cordon.qry.<view>`` and the ``cordon.sys.health`` fan-out
(:mod:`services.demo.client`, nats-py only). Nothing here imports another service's code or the
contracts. The one exception is starting a Cordon when none is given: :mod:`services.demo.system`
uses the start-up helpers (``shared.embedded``, ``services.supervisor.wait_ready``, the service
names of ``services.cli``), as ``cordon up`` does.

- :mod:`~services.demo.street`: the street, with the reports' sizes, drawn from a seed;
- :mod:`~services.demo.plan`: who does what on the day, with the gate decision each passage expects;
- :mod:`~services.demo.day`, :mod:`~services.demo.morning`, :mod:`~services.demo.afternoon`: the day played;
- :mod:`~services.demo.book`, :mod:`~services.demo.check`: what the board must show, and the check;
- :mod:`~services.demo.tables`: the board and the daily report as text;
- :mod:`~services.demo.load`: the open-loop load generator; :mod:`~services.demo.cli`: the commands.
"""
