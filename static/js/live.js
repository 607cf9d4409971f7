// Live numbers: filled in by the storefront.
