"""The public site: home page, campaign listing, campaign page and the queries behind them."""
