"""Typed models, split by area. Import from here: ``from shop.models import Batch``."""

from shop.models.audit import AuditEntry
from shop.models.catalog import Batch, BatchImage, ImageBlob, Product
from shop.models.draw import DrawEntry
from shop.models.drop import Drop
from shop.models.invitation import Invitation
from shop.models.ledger import EditionChange, LedgerCheck
from shop.models.message import DropSubscription, Message
from shop.models.order import (
    Allotment,
    HeldByAccount,
    HeldByNetwork,
    Order,
    Unit,
    UnitRefund,
)
from shop.models.refusal_count import RefusalCount
from shop.models.shipping import ShippingRate
from shop.models.stripe_event import StripeEvent
from shop.models.unrecognised_payment import UnrecognisedPayment
from shop.models.user import User
from shop.models.waitlist import WaitlistPlace

__all__ = [
    "Allotment",
    "AuditEntry",
    "Batch",
    "BatchImage",
    "DrawEntry",
    "Drop",
    "DropSubscription",
    "EditionChange",
    "HeldByAccount",
    "HeldByNetwork",
    "ImageBlob",
    "Invitation",
    "LedgerCheck",
    "Message",
    "Order",
    "Product",
    "RefusalCount",
    "ShippingRate",
    "StripeEvent",
    "Unit",
    "UnitRefund",
    "UnrecognisedPayment",
    "User",
    "WaitlistPlace",
]
