"""The logic of ``manage.py realtime``: tail, publish and connect.

The management command (:mod:`django_realtime.management.commands.realtime`)
only reads arguments; the modules here do the work:

- :mod:`~.arguments`: pure checks of stream names, positions, payloads and
  URLs, and the exit codes;
- :mod:`~.login`: a session for a user, in the project's session store;
- :mod:`~.routes`: the routes of the project's application to stream
  consumers;
- :mod:`~.local`: a WebSocket to the project's application in this process;
- :mod:`~.tail`, :mod:`~.publish`, :mod:`~.connect`: the three subcommands.
"""
