"""Patient aid after success: the money goes to the hospital, in tranches against its invoices.

A hospital is a provider with its own verified payout account (`Hospital`). The
campaigner requests each payout as a `Tranche` against an itemised invoice from that
hospital; an operator approves it, a public notice shows it on the campaign page for
PATIENT_AID_NOTICE_HOURS with a "report a problem" link, and then the `patient_aid.pay`
job pays it to the hospital (escrow -> the hospital's payable -> its account). When the
appeal ends, what is left in escrow is returned to the donors pro rata (`SurplusReturn`).
"""
