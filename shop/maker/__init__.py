"""The maker console (``/maker``): one blueprint whose routes live in modules by area.

Importing the route modules here registers their views on ``bp`` before the app takes it.
"""

from shop.maker import drop_views, message_views, order_views, product_views, shipping_views
from shop.maker.views import bp

__all__ = [
    "bp",
    "drop_views",
    "message_views",
    "order_views",
    "product_views",
    "shipping_views",
]
