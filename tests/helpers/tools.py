"""The system tools the test suite runs, and the Debian package that provides each.

``tests/conftest.py`` checks them once when the session starts and stops the run with one
message naming every missing tool; ``.ci/run`` installs exactly ``debian_packages()``
(``python3 -m tests.helpers.tools`` prints them). A test that starts a new tool adds it here.
"""

from __future__ import annotations

import shutil
import sys

__all__ = ["TOOLS", "debian_packages", "missing_message", "missing_tools"]

# tool -> Debian package (bookworm and later; the same names on Ubuntu)
TOOLS: dict[str, str] = {
    "apt-ftparchive": "apt-utils",  # the independent Packages indices of tests/helpers/archive.py
    "apt-get": "apt",  # the e2e client (tests/helpers/apt.py)
    "apt-cache": "apt",
    "apt-file": "apt-file",  # finds packages by file in the Contents mirrorkit publishes
    "dpkg-deb": "dpkg",  # real .deb files (tests/helpers/debs.py) and their fields
    "dpkg-source": "dpkg-dev",  # real source packages (tests/helpers/sources.py); apt-get source
    "gpg": "gpg",  # throwaway keys and signatures (tests/helpers/gpgkeys.py); python-gnupg
    "gpg-agent": "gpg-agent",  # gpg signs through the agent
    "gpgconf": "gpgconf",  # stops the agents at teardown
    "gpgv": "gpgv",  # apt's verifier, and the documented third-party bundle check
    "mmdebstrap": "mmdebstrap",  # the bootstrap client test
    "xz": "xz-utils",  # multi-block xz indices
    "zstd": "zstd",  # an independent zstd, and the documented bundle check
    "lz4": "lz4",  # apt's own lists (the real bookworm index) are lz4-compressed
    "openssl": "openssl",  # throwaway certificates and a CA for the TLS tests
    "tinyproxy": "tinyproxy",  # the real forward proxy of tests/integration/test_network.py
    "tar": "tar",  # the documented bundle check
    "sha256sum": "coreutils",
    "aptly": "aptly",  # the oracle of aptly's package keys (tests/integration/test_rest_api.py)
    "curl": "curl",  # the CI upload script against the REST API
}


def missing_tools() -> dict[str, str]:
    """The tools not found on PATH, tool -> package."""
    return {tool: pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}


def missing_message(missing: dict[str, str]) -> str:
    """One message naming every missing tool and what to install."""
    lines = [f"missing: {tool} (apt-get install {pkg})" for tool, pkg in missing.items()]
    packages = " ".join(sorted(set(missing.values())))
    return (
        "the test suite needs system tools that are not installed:\n  "
        + "\n  ".join(lines)
        + f"\nInstall them all with: apt-get install {packages}"
    )


def debian_packages() -> list[str]:
    return sorted(set(TOOLS.values()))


if __name__ == "__main__":
    print(" ".join(debian_packages()))
    sys.exit(0)
