"""Demo data: what it contains (`data`), how it is created through the services (`seed`),
its cover pictures (`covers`) and `flask demo seed` (`cli`)."""
