"""trainserve: distributed training and serving of course-sized neural networks on Ray."""
__version__ = "0.1.0"


def __getattr__(name):
    # The SDK pulls in grpc; import it only when asked for.
    if name == "Client":
        from trainserve.client import Client
        return Client
    raise AttributeError(name)
