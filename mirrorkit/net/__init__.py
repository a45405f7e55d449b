"""The network users have: proxies, CA bundles, credentials, redaction.

``config`` (NetworkConfig, proxy selection, CA store), ``auth`` (apt's auth.conf, .netrc),
``redact`` (credentials out of URLs), ``client`` (the httpx client that routes each request
direct or through a proxy, and names the cause of a failure). Nothing is re-exported here:
:mod:`mirrorkit.errors` imports ``redact`` and must not pull in the rest.
"""
