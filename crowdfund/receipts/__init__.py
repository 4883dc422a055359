"""Donations after the gift: receipts (page and PDF), donor messages on the campaign page
and the campaigner hiding one; the PDF writer subscription certificates use too."""
