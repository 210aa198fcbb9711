"""crossfeed's federated strategies as a Flower app, for ``flwr run`` on a deployment.

``server_app`` reads the job folder named by the run config (``job``, written by
:func:`crossfeed.federated.write_flower_job`), runs the rounds and writes its result next to it;
``client_app`` trains on the rows of the file its SuperNode names (``data-path`` in the node
config). :func:`crossfeed.federated.write_flower_app` writes the app folder that points here.
Importing this module needs ``crossfeed[federated]`` (``flwr``).
"""

from crossfeed.federated._flower import _client_app, _deployed_server_app

#: The ServerApp of a deployment (``[tool.flwr.app.components] serverapp``).
server_app = _deployed_server_app()
#: The ClientApp of a deployment (``[tool.flwr.app.components] clientapp``).
client_app = _client_app()

__all__ = ["client_app", "server_app"]
