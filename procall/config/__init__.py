"""Configuration: typed, versioned properties in the configuration database (transport-free).

``PropertyRegistry`` defines the properties (``UCSERVER_PROPERTIES``: type, default, range,
scope, description, applied live or at start). ``ConfigService`` lists, reads and writes
them for administrators: checked values, a compare-and-set on the version the admin edited,
the edit lease's fencing number (``LeaseCheck``), and a change announced to every server
(``ChangeNotifier``). ``LiveConfig`` is what one server runs with: newer versions only, and
callbacks for the parts that apply a change without a restart. Values live in a
``ConfigStore`` (SQL); every UCServer also keeps a local cache file of them.
"""

from procall.config.live import LiveConfig
from procall.config.model import (
    ConfigValue,
    PropertyKey,
    PropertySpec,
    PropertyType,
    PropertyValue,
    Scope,
    resource_of,
)
from procall.config.ports import ChangeNotifier, ConfigStore, LeaseCheck
from procall.config.registry import UCSERVER_PROPERTIES, PropertyRegistry
from procall.config.service import ConfigService, NoLeases, NoNotifier

__all__ = [
    "UCSERVER_PROPERTIES",
    "ChangeNotifier",
    "ConfigService",
    "ConfigStore",
    "ConfigValue",
    "LeaseCheck",
    "LiveConfig",
    "NoLeases",
    "NoNotifier",
    "PropertyKey",
    "PropertyRegistry",
    "PropertySpec",
    "PropertyType",
    "PropertyValue",
    "Scope",
    "resource_of",
]
