"""engram's REST API: mem0's paths and bodies over one :class:`~engram.core.AsyncMemory`.

Build the app with :func:`create_app` and serve it with any ASGI server (``engram serve`` runs
uvicorn). API keys live in a :class:`KeyStore` file that holds only their hashes. See docs/rest.md.
"""

from ._app import DEFAULT_MAX_BODY_BYTES, create_app
from ._errors import CODES
from ._keys import ApiKey, KeyStore, hash_key, new_key

__all__ = ["CODES", "DEFAULT_MAX_BODY_BYTES", "ApiKey", "KeyStore", "create_app", "hash_key", "new_key"]
