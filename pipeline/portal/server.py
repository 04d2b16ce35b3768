"""How `voxgate serve` runs the portal under uvicorn, kept in one place so tests start the very same server.

uvicorn trusts `X-Forwarded-For` and `X-Forwarded-Proto` from 127.0.0.1 by default
(`FORWARDED_ALLOW_IPS`): any local process, or a request relayed by anything on the
host, could then name its own client address and step around the sign-in rate limit.
voxgate trusts no forwarding header unless the operator names the proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from pipeline.errors import InputError


def checked_proxies(proxies: Sequence[str]) -> list[str]:
    """The trusted proxies as IP addresses or networks; one readable refusal for anything else."""
    out = []
    for proxy in proxies:
        try:
            out.append(str(ipaddress.ip_network(proxy.strip(), strict=False)))
        except ValueError:
            raise InputError(f"--trusted-proxy {proxy!r} is not an IP address or network (e.g. 10.0.0.5).") from None
    return out


def server_config(app, *, host: str, port: int, trusted_proxies: Sequence[str] = ()):  # noqa: ANN001, ANN201
    """The uvicorn.Config for the portal: forwarding headers honoured only from `trusted_proxies`."""
    import uvicorn

    proxies = checked_proxies(trusted_proxies)
    return uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=bool(proxies),
                          forwarded_allow_ips=",".join(proxies) if proxies else "")
