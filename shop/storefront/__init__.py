"""What customers see (``/``): one blueprint whose routes live in modules by area.

Importing the route modules here registers their views on ``bp`` before the app takes it.
"""

from shop.storefront import draw_views
from shop.storefront.views import bp

__all__ = ["bp", "draw_views"]
