"""moe-webui: the gateway's own web page, a chat and a routing dashboard, served at ``/``.

Plain HTML, CSS and JavaScript modules shipped as package data (two small vendored libraries,
marked and DOMPurify, with their licences), so installing the distribution is all it takes: no
JavaScript toolchain, no CDN, nothing fetched from outside the gateway at run time.
"""

from moe_webui.frontend import WebUIFrontend, WebUIOptions

__all__ = ["WebUIFrontend", "WebUIOptions"]
