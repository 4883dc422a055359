"""Equity after success: shares issued when a round settles, the cap table, subscription
certificates, and reconfirmation after a material change to a live round."""
