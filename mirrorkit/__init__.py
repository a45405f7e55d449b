"""mirrorkit: verified offline snapshot mirrors of Debian/Ubuntu APT archives."""

__version__ = "0.1.0"
