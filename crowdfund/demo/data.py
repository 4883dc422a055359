"""What the demo contains: people, organisations, campaigns of all four kinds, and pledges.

Plain data; `crowdfund.demo.seed` creates it through the services, exactly as the pages
would. Users are known by e-mail, organisations by legal name, campaigns by their
organisation and title (the slug comes from the title, as for any campaign), pledges by
their idempotency token `demo:<email>:<campaign key>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crowdfund.accounts.models import OrganisationType, Role
from crowdfund.campaigns.models import CampaignKind, CampaignState, HealthCategory, SecurityType

#: The password of every demo account.
DEMO_PASSWORD = "healthfund-demo"

K, C, S = CampaignKind, HealthCategory, CampaignState


# ---------------------------------------------------------------------------
# What the demo contains
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    role: Role
    what: str


USERS = (
    DemoUser(
        "admin@healthfund.example", "Alex Admin", Role.ADMIN, "Admin: fees, limits, policies, operators"
    ),
    DemoUser(
        "operator@healthfund.example",
        "Olivia Wang",
        Role.OPERATOR,
        "Operator: reviews campaigns and documents",
    ),
    DemoUser(
        "campaigner@healthfund.example", "Lin Mei", Role.BACKER, "Campaigner: member of five organisations"
    ),
    DemoUser("backer@healthfund.example", "Ben Carter", Role.BACKER, "Backer, investor, lender and donor"),
    DemoUser(
        "founder@healthfund.example", "Daniel Brooks", Role.BACKER, "Campaigner: three US organisations"
    ),
    DemoUser("family@healthfund.example", "Chen Jie", Role.BACKER, "Campaigner: a patient's father"),
    DemoUser("nonprofit@healthfund.example", "Amina Otieno", Role.BACKER, "Campaigner: a health nonprofit"),
)

#: The public: twelve more backers with a saved sandbox card (names as they sign up).
BACKERS = tuple(
    DemoUser(f"backer{n}@healthfund.example", name, Role.BACKER, "Demo backer with pledges")
    for n, name in enumerate(
        (
            "Wang Fang",
            "Zhang Wei",
            "Li Na",
            "Liu Yang",
            "Zhao Lei",
            "Huang Min",
            "Sarah Johnson",
            "Michael Lee",
            "Emily Davis",
            "Carlos Garcia",
            "Priya Patel",
            "James Wilson",
        ),
        start=1,
    )
)


@dataclass(frozen=True)
class DemoOrg:
    key: str
    type: OrganisationType
    legal_name: str
    registration_number: str
    country: str
    owner: str
    description: str
    verified: bool = True
    website: str | None = None
    #: Names earlier seeds used: such a row is renamed instead of duplicated.
    former_names: tuple[str, ...] = ()


ORGS = (
    DemoOrg(
        "heartline", OrganisationType.HEALTH_STARTUP, "Heartline Medical Technology (Shenzhen) Co., Ltd.",
        "91440300MA5HLT0001", "CN", "campaigner@healthfund.example",
        "A medical-device startup making wearable heart monitors affordable for community clinics.",
        website="https://heartline.example",
    ),
    DemoOrg(
        "medbridge", OrganisationType.HEALTH_STARTUP, "MedBridge Health Technology Co., Ltd.",
        "91330100MA2MBH0002", "CN", "campaigner@healthfund.example",
        "A telemedicine platform connecting county hospitals with specialists in provincial centres.",
    ),
    DemoOrg(
        "qingshan", OrganisationType.CLINIC, "Qingshan Town Community Health Centre",
        "PDY-43-0719-2011", "CN", "campaigner@healthfund.example",
        "A public community health centre serving 60,000 people in a rural county.",
    ),
    DemoOrg(
        "retina", OrganisationType.RESEARCH_GROUP, "Retinal Imaging Lab, Jiangnan Medical University",
        "JNMU-RIL-2016", "CN", "campaigner@healthfund.example",
        "An academic group building low-cost screening for diabetic eye disease.",
    ),
    DemoOrg(
        "breathwell", OrganisationType.HEALTH_STARTUP, "BreathWell Devices Co., Ltd.",
        "91320500MA7BWD0005", "CN", "campaigner@healthfund.example",
        "A two-person startup designing a home spirometer for children with asthma.",
        verified=False,
    ),
    DemoOrg(
        "caredose", OrganisationType.HEALTH_STARTUP, "CareDose Inc.", "DE-7731045", "US", "founder@healthfund.example",
        "Makers of connected medication dispensers for older people living at home.",
        website="https://caredose.example",
    ),
    DemoOrg(
        "clearpath", OrganisationType.HEALTH_STARTUP, "ClearPath Diagnostics, Inc.", "DE-6620981", "US",
        "founder@healthfund.example", "A CLIA-certified laboratory startup offering affordable at-home test kits.",
    ),
    DemoOrg(
        "riverside", OrganisationType.CLINIC, "Riverside Physiotherapy Centre LLC", "OR-LLC-118204", "US",
        "founder@healthfund.example", "An independent physiotherapy practice with four therapists.",
    ),
    DemoOrg(
        "chen-family", OrganisationType.PATIENT_FAMILY, "Chen family", "ID-verified-family", "CN",
        "family@healthfund.example", "The parents of seven-year-old Xiaoyu, raising money for her treatment.",
        former_names=("Chen family (for Chen Xiaoyu)",),
    ),
    DemoOrg(
        "chw", OrganisationType.NONPROFIT, "Community Health Workers Alliance", "EIN 84-3920117", "US",
        "nonprofit@healthfund.example", "A nonprofit training and equipping community health workers.",
        website="https://chw-alliance.example",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DemoCampaign:
    #: Stable name of the demo campaign in pledge tokens (its URL slug comes from the title).
    key: str
    org: str
    kind: CampaignKind
    category: HealthCategory
    currency: str
    goal: int  #: in major units
    title: str
    summary: str
    story: str
    state: CampaignState = S.LIVE
    #: Days since the start (negative: starts later) and days from now to the end.
    started_days_ago: int = 7
    ends_in_days: int = 30
    #: An approved campaign that starts this many seconds after the seed runs, so that
    #: `make run` shows the jobs putting it live (instead of `started_days_ago`).
    starts_in_seconds: int | None = None
    tiers: tuple[dict, ...] = ()
    #: The kind's terms as the draft form sends them (amounts in major units).
    terms: dict = field(default_factory=dict)


def _tier(
    title: str, price: int, limit: int | None, months: int | None, description: str, ships_to: str = ""
) -> dict:
    return {
        "title": title,
        "price": price,
        "quantity_limit": limit,
        "months": months,
        "description": description,
        "ships_to": ships_to,
    }


CAMPAIGNS = (
    DemoCampaign(
        key="pulsestrip-portable-ecg-patch",
        org="heartline",
        kind=K.REWARD,
        category=C.MEDICAL_DEVICES,
        currency="CNY",
        goal=300_000,
        title="PulseStrip: a low-cost portable ECG patch",
        summary="A single-lead ECG patch that records for 7 days and flags atrial fibrillation, for under ¥400.",
        started_days_ago=9,
        ends_in_days=26,
        story="""\
# Catch the heartbeat that the clinic visit misses

Atrial fibrillation comes and goes. A ten-second ECG at the clinic often sees a normal
rhythm, and the patient goes home without a diagnosis — until a stroke. Holter monitors
find it, but they cost thousands of yuan and most township clinics do not have one.

**PulseStrip** is a thin, waterproof patch that records a single-lead ECG for seven days.
The patient wears it at home; the clinic reads the recording on a phone, and our
algorithm highlights the episodes a doctor should look at.

## What your pledge pays for

- Tooling for the injection-moulded housing and the first production run of 2,000 patches
- The clinical validation study with two county hospitals (300 patients)
- Completing the Class II medical device registration with the NMPA

## Where we are

Our prototype has been worn by 120 volunteers. Sensitivity for atrial fibrillation was
96 % against a 12-lead reference. The registration test report is done; the clinical
study is approved by the hospitals' ethics committees.
""",
        tiers=(
            _tier(
                "Thank you", 50, None, None, "Your name on our supporters' page and the study updates.", ""
            ),
            _tier(
                "Early supporter: one PulseStrip kit",
                399,
                300,
                6,
                "One reader and 7-day patch, with two spare patches.",
                "Mainland China, Hong Kong, Macau",
            ),
            _tier(
                "Family pack: three kits",
                999,
                100,
                6,
                "Three readers and patches for you and your parents.",
                "Mainland China, Hong Kong, Macau",
            ),
            _tier(
                "Village clinic bundle",
                2_990,
                5,
                7,
                "Ten kits and a remote training session for the clinic's staff.",
                "Mainland China",
            ),
        ),
    ),
    DemoCampaign(
        key="caredose-smart-pill-dispenser",
        org="caredose",
        kind=K.REWARD,
        category=C.MEDICAL_DEVICES,
        currency="USD",
        goal=60_000,
        title="CareDose: a smart pill dispenser for older people",
        summary="Sorts a month of medication, opens at the right time, and tells family when a dose is missed.",
        started_days_ago=12,
        ends_in_days=18,
        story="""\
# The right pill, at the right time, every day

Half of older adults taking five or more medicines miss or double a dose every week.
Pill organisers help, but they cannot remind, and they cannot tell anyone when something
goes wrong.

**CareDose** holds 28 days of medication in locked compartments. At each dose time it
lights up and chimes; only the right compartment opens. If a dose is not taken within an
hour, a family member or carer receives a text message.

## What you get

- A dispenser that works without Wi-Fi (it has a built-in cellular modem)
- A free app for family members to see the schedule and missed doses
- Large buttons, a loud chime and a clear display designed with occupational therapists

## Why now

We have built 40 units by hand and tested them in two assisted-living homes for six
months. This campaign pays for the first factory run of 1,000 units.
""",
        tiers=(
            _tier("Supporter", 15, None, None, "Our thanks and a behind-the-scenes update every month.", ""),
            _tier(
                "Early bird CareDose",
                149,
                250,
                5,
                "One dispenser at the early-bird price.",
                "United States, Canada",
            ),
            _tier(
                "CareDose + 12 months of family alerts",
                229,
                150,
                5,
                "One dispenser and a year of text alerts for up to three family members.",
                "United States, Canada",
            ),
            _tier(
                "Two homes",
                399,
                3,
                5,
                "Two dispensers with alerts: for both parents in different homes.",
                "United States",
            ),
        ),
    ),
    DemoCampaign(
        key="medbridge-telemedicine-platform",
        org="medbridge",
        kind=K.EQUITY,
        category=C.DIGITAL_HEALTH,
        currency="CNY",
        goal=2_000_000,
        title="MedBridge: specialists for every county hospital",
        summary="Invest in the telemedicine platform that lets county hospitals consult provincial specialists in minutes.",
        started_days_ago=14,
        ends_in_days=38,
        story="""\
# Specialist care without the six-hour bus ride

County hospitals treat most of China's rural patients but have few specialists. Patients
travel to the provincial capital for a consultation that often takes ten minutes.

**MedBridge** connects county doctors with specialists through scheduled video
consultations, shared imaging and a structured referral form. 42 county hospitals in
three provinces use it today; 9,800 consultations were held last year.

## The business

- Hospitals pay a yearly subscription per department
- Specialists are paid per consultation; the platform keeps 20 %
- Revenue grew from ¥1.1 million to ¥3.4 million last year

## Use of funds

1. Expand to two more provinces (sales and onboarding staff)
2. Integrate with the hospitals' PACS imaging systems
3. Obtain the Level 3 information-security certification

Investing in a young company is risky. Read the investment terms and the risk section of
our offering document before you invest.
""",
        terms={
            "security_type": SecurityType.PREFERRED,
            "price_per_share": 10,
            "pre_money_valuation": 60_000_000,
            "min_target": 2_000_000,
            "max_target": 5_000_000,
            "min_investment": 1_000,
        },
    ),
    DemoCampaign(
        key="clearpath-diagnostics-lab",
        org="clearpath",
        kind=K.EQUITY,
        category=C.PHARMA_BIOTECH,
        currency="USD",
        goal=500_000,
        title="ClearPath Diagnostics: lab-quality tests from home",
        summary="Own a share of a certified lab startup offering at-home blood tests at a third of the usual price.",
        started_days_ago=6,
        ends_in_days=44,
        story="""\
# Blood tests without the waiting room

Routine blood tests — cholesterol, HbA1c, thyroid — are the backbone of preventive care,
but many people skip them because of cost and time off work.

**ClearPath** mails a finger-prick kit, processes the sample in our own CLIA-certified
laboratory and sends results with a doctor's note within 48 hours.

## Traction

- 18,000 kits processed in our first 14 months
- 31 % of customers reorder within six months
- Partnerships with two regional employers' wellness programmes

## What the money is for

- A second automated analyser to double capacity
- Sales to employers and insurers
- Clinical validation of three new panels (kidney, liver and iron)

Early-stage investments are illiquid and risky. You may lose the money you invest.
""",
        terms={
            "security_type": SecurityType.COMMON,
            "price_per_share": "2.50",
            "pre_money_valuation": 12_000_000,
            "min_target": 500_000,
            "max_target": 1_070_000,
            "min_investment": 250,
        },
    ),
    DemoCampaign(
        key="qingshan-dialysis-unit",
        org="qingshan",
        kind=K.DEBT,
        category=C.CLINICS_CARE,
        currency="CNY",
        goal=1_200_000,
        title="Qingshan: expanding our dialysis unit",
        summary="Lend to a rural health centre adding six dialysis stations, so patients stop travelling 80 km three times a week.",
        started_days_ago=5,
        ends_in_days=33,
        story="""\
# Dialysis close to home

Forty-one patients from our town need dialysis three times a week. Our unit has four
stations, so most of them travel 80 km to the county hospital — a day lost each time, and
a cost many families cannot carry for long.

## The plan

- Six new haemodialysis machines and a water-treatment system
- Renovation of the ward next to the existing unit
- Training for four nurses at the county hospital's nephrology department

## How you are repaid

The expanded unit will treat 30 more patients a week. Dialysis is reimbursed by the basic
medical insurance; the extra income covers the monthly repayments more than twice over.
The health centre has repaid two earlier equipment loans on time.
""",
        terms={
            "annual_rate": "7.2",
            "term_months": 36,
            "min_amount": 1_200_000,
            "max_amount": 1_500_000,
            "min_loan_share": 500,
        },
    ),
    DemoCampaign(
        key="riverside-physio-equipment-loan",
        org="riverside",
        kind=K.DEBT,
        category=C.CLINICS_CARE,
        currency="USD",
        goal=150_000,
        title="Riverside Physiotherapy: new rehabilitation equipment",
        summary="A two-year loan for an anti-gravity treadmill and a hydrotherapy pool lift for stroke and knee patients.",
        started_days_ago=3,
        ends_in_days=21,
        story="""\
# Helping patients walk again, sooner

Stroke and knee-replacement patients recover faster when they can start walking early,
with part of their body weight supported. Today we send those patients to a hospital
45 minutes away.

## What we will buy

- An anti-gravity treadmill
- A lift for our hydrotherapy pool, so wheelchair users can use it
- Balance-training platforms for two treatment rooms

## Repayment

We have served the community for eleven years and have 1,400 active patients. The new
equipment is billed under existing insurance codes; our projections show repayments at
less than a third of the extra income it brings in.
""",
        terms={
            "annual_rate": "6.5",
            "term_months": 24,
            "min_amount": 150_000,
            "max_amount": 200_000,
            "min_loan_share": 100,
        },
    ),
    DemoCampaign(
        key="help-xiaoyu-beat-leukaemia",
        org="chen-family",
        kind=K.DONATION,
        category=C.PATIENT_AID,
        currency="CNY",
        goal=300_000,
        title="Help Xiaoyu beat leukaemia",
        summary="Seven-year-old Xiaoyu needs chemotherapy and a bone-marrow transplant. Every yuan goes straight to her hospital.",
        started_days_ago=8,
        ends_in_days=12,
        story="""\
# Xiaoyu is seven and loves drawing horses

In the spring she started to bruise easily and was always tired. The blood tests at our
county hospital led to the children's hospital in the provincial capital, and to a
diagnosis of acute lymphoblastic leukaemia.

She has finished the first month of chemotherapy and is in remission. Her doctors
recommend a bone-marrow transplant; her older brother is a match.

## What the money pays for

- The transplant and the weeks in the sterile ward
- Medicines not covered by the medical insurance
- Follow-up care for the first year

## How HealthFund handles it

The money is paid **directly to the hospital**, in tranches against its invoices. If
anything is left over, it is returned to donors. HealthFund's operators have checked the
diagnosis, the hospital's cost estimate and our family's assets.

Thank you for reading, and for sharing.
""",
        terms={
            "beneficiary_name": "Jiangnan Children's Hospital (for Chen X.)",
            "is_patient_aid": True,
            "patient_name": "Chen Xiaoyu",
            "hospital_name": "Jiangnan Children's Hospital, Department of Haematology",
            "diagnosis_summary": "Acute lymphoblastic leukaemia (B-cell), in remission after induction chemotherapy; "
            "allogeneic bone-marrow transplant planned, with her brother as donor.",
        },
    ),
    DemoCampaign(
        key="xiaoyu-s-first-months-of-chemotherapy",
        org="chen-family",
        kind=K.DONATION,
        category=C.PATIENT_AID,
        currency="CNY",
        goal=45_000,
        title="Xiaoyu's first months of chemotherapy",
        summary="Our first appeal for Xiaoyu: her induction chemotherapy. The money is paid to her hospital against its invoices.",
        state=S.SETTLED,
        started_days_ago=80,
        ends_in_days=-50,
        story="""\
# The first month decides a lot

Xiaoyu was diagnosed with acute lymphoblastic leukaemia in the spring. Her doctors started
induction chemotherapy at once: four weeks in the haematology ward, with blood
transfusions and daily tests.

## What the money pays for

- The induction chemotherapy and the medicines not covered by the medical insurance
- Blood and platelet transfusions
- The first cycle of consolidation chemotherapy

## How HealthFund handles it

Nothing is paid to us. The hospital sends an itemised invoice; HealthFund's operators check
it and show each payment on this page for a day before it is paid to the hospital, so that
anyone can report a problem. What is left when the treatment ends goes back to donors.

Thank you: this appeal reached its goal. Xiaoyu's next step is in our new appeal.
""",
        terms={
            "beneficiary_name": "Jiangnan Children's Hospital (for Chen X.)",
            "is_patient_aid": True,
            "patient_name": "Chen Xiaoyu",
            "hospital_name": "Jiangnan Children's Hospital, Department of Haematology",
            "diagnosis_summary": "Acute lymphoblastic leukaemia (B-cell), newly diagnosed; induction "
            "chemotherapy followed by consolidation.",
        },
    ),
    DemoCampaign(
        key="train-community-health-workers",
        org="chw",
        kind=K.DONATION,
        category=C.CLINICS_CARE,
        currency="USD",
        goal=80_000,
        title="Train 200 community health workers",
        summary="Fund training, a kit and a phone for health workers who visit homes in underserved neighbourhoods.",
        started_days_ago=20,
        ends_in_days=25,
        story="""\
# Health care that knocks on the door

Community health workers are trusted neighbours trained to check blood pressure, help
people manage diabetes, and make sure no one misses an appointment. Studies show they
cut hospital readmissions and save more than they cost.

## What a donation buys

- **$40**: a blood-pressure monitor for one health worker
- **$150**: a smartphone with our visit-recording app
- **$400**: the full 80-hour certified training course for one person

## Our record

Since 2019 we have trained 640 health workers who made 95,000 home visits. Our yearly
reports and audited accounts are on our website. Every donation gets a receipt.
""",
        terms={"beneficiary_name": "Community Health Workers Alliance", "is_patient_aid": False},
    ),
    DemoCampaign(
        key="breathwell-home-spirometer",
        org="breathwell",
        kind=K.REWARD,
        category=C.MEDICAL_DEVICES,
        currency="CNY",
        goal=150_000,
        title="BreathWell: a home spirometer for children with asthma",
        summary="A playful lung-function meter that turns daily breathing checks into a game.",
        state=S.SUBMITTED,
        started_days_ago=-7,
        ends_in_days=40,
        story="""\
# Daily breathing checks, made fun

Children with asthma should measure their lung function every day, but they hate it.
BreathWell turns the measurement into a game on a tablet.

## Rewards

- A BreathWell meter with the game app
- A clinic pack for paediatric practices
""",
        tiers=(
            _tier("BreathWell meter", 299, 500, 8, "One meter with the game app.", "Mainland China"),
            _tier("Clinic pack", 1_990, 50, 8, "Eight meters and the clinic dashboard.", "Mainland China"),
        ),
    ),
    DemoCampaign(
        key="village-telemedicine-kiosks",
        org="medbridge",
        kind=K.DEBT,
        category=C.DIGITAL_HEALTH,
        currency="CNY",
        goal=800_000,
        title="Telemedicine kiosks for village clinics",
        summary="A loan to install 40 telemedicine kiosks in village clinics.",
        state=S.DRAFT,
        started_days_ago=-14,
        ends_in_days=45,
        story="""\
# Draft

A loan to install telemedicine kiosks in village clinics. *Story to be finished.*
""",
        terms={
            "annual_rate": "8",
            "term_months": 24,
            "min_amount": 800_000,
            "max_amount": 1_000_000,
            "min_loan_share": 500,
        },
    ),
    DemoCampaign(
        key="sightline-retinal-screening",
        org="retina",
        kind=K.DONATION,
        category=C.RESEARCH,
        currency="CNY",
        goal=150_000,
        title="SightLine: screening for diabetic eye disease with a phone",
        summary="Help build an open dataset and a free app that screens for diabetic retinopathy with a clip-on lens.",
        state=S.SETTLED,
        started_days_ago=60,
        ends_in_days=-15,
        story="""\
# Blindness from diabetes is preventable

Diabetic retinopathy can be treated if it is found early, but screening needs a fundus
camera that township clinics do not have.

## The project

- Collect and label 20,000 retinal images taken with a clip-on phone lens
- Publish the dataset openly for other researchers
- Release a free screening app for clinics

Thank you to everyone who supported this project.
""",
        terms={
            "beneficiary_name": "Retinal Imaging Lab, Jiangnan Medical University",
            "is_patient_aid": False,
        },
    ),
    DemoCampaign(
        key="solar-vaccine-fridges",
        org="chw",
        kind=K.DONATION,
        category=C.CLINICS_CARE,
        currency="USD",
        goal=40_000,
        title="Solar vaccine fridges for rural health posts",
        summary="Keep vaccines cold where the power fails: solar refrigerators for twelve rural health posts.",
        state=S.APPROVED,
        starts_in_seconds=30,
        ends_in_days=35,
        story="""\
# Vaccines only work if they stay cold

Twelve of the rural health posts our health workers serve lose power for hours every
week. Each outage can spoil a month of vaccines, and mothers walk for half a day to find
the post has none left.

## What your donation buys

- Twelve WHO-prequalified solar direct-drive refrigerators
- Installation and a two-day maintenance course for each post's staff
- Temperature loggers that text an alarm when a fridge warms up

## Our track record

We equipped our first four posts last year: not one dose has been lost since.
""",
        terms={"beneficiary_name": "Community Health Workers Alliance", "is_patient_aid": False},
    ),
    DemoCampaign(
        key="quietcuff-talking-blood-pressure-monitor",
        org="heartline",
        kind=K.REWARD,
        category=C.MEDICAL_DEVICES,
        currency="CNY",
        goal=30_000,
        title="QuietCuff: a blood-pressure monitor that reads aloud",
        summary="An upper-arm monitor that speaks each reading in Mandarin or Cantonese, for people who cannot read a small screen.",
        state=S.SETTLED,
        started_days_ago=52,
        ends_in_days=-22,
        story="""\
# A reading you can hear

Older people with high blood pressure are asked to measure it at home every day, but many
cannot read the small digits of a home monitor, and some cannot read at all.

**QuietCuff** speaks every reading aloud, says whether it is in the normal range, and
keeps the last 60 readings for the village doctor.

## What the campaign paid for

- The voice module and its recordings in Mandarin and Cantonese
- The first production run of 1,000 monitors
- Training materials for village doctors

## Thank you

The campaign reached its goal; every backer's card was charged when it closed and the
money went to Heartline through HealthFund's settlement. See the money trail.
""",
        tiers=(
            _tier("Thank you", 30, None, None, "Our thanks and the production updates.", ""),
            _tier(
                "One QuietCuff",
                260,
                400,
                3,
                "One monitor with a standard and a large cuff.",
                "Mainland China",
            ),
            _tier(
                "Clinic set of five",
                1_200,
                40,
                3,
                "Five monitors and a printed guide for the clinic's patients.",
                "Mainland China",
            ),
        ),
    ),
    DemoCampaign(
        key="caredose-fall-alert-pendant",
        org="caredose",
        kind=K.REWARD,
        category=C.MEDICAL_DEVICES,
        currency="USD",
        goal=50_000,
        title="CareDose Guardian: a fall-alert pendant",
        summary="A pendant that detects a fall and calls family, without a monthly contract.",
        state=S.FAILED,
        started_days_ago=40,
        ends_in_days=-5,
        story="""\
# Help when nobody is in the room

One in four people over 65 falls each year; many cannot get up or reach a phone.

## What we wanted to build

- A pendant that detects falls with an accelerometer and a barometer
- A cellular link that calls two family members, with no monthly fee

## What happened

The campaign did not reach its goal. It was all-or-nothing: nobody was charged, and every
pledge was released when it closed.
""",
        tiers=(
            _tier("Supporter", 10, None, None, "Our thanks and news of what we do next.", ""),
            _tier("Guardian pendant", 129, 500, 6, "One pendant with its charger.", "United States"),
            _tier(
                "Pendant + 12 months of family alerts",
                249,
                300,
                6,
                "One pendant and a year of text alerts for up to three family members.",
                "United States",
            ),
        ),
    ),
    DemoCampaign(
        key="riverside-home-knee-rehab-kit",
        org="riverside",
        kind=K.REWARD,
        category=C.CLINICS_CARE,
        currency="USD",
        goal=1_200,
        title="Riverside: a home knee-rehab kit",
        summary="Resistance bands, a balance pad and video sessions with our therapists, for recovery at home.",
        started_days_ago=25,
        ends_in_days=2,
        story="""\
# Recovery does not stop at the clinic door

After a knee replacement, the exercises done at home decide how well the knee bends a
year later. Many patients stop because they are unsure they are doing them right.

## The kit

- Three resistance bands and a balance pad
- A printed six-week programme
- Video check-ins with one of our therapists

## Why a campaign

The kits are cheap, the therapists' time is not: the campaign pays for the first 200 kits
and the video sessions.
""",
        tiers=(
            _tier("Thank you", 10, None, None, "Our thanks and the programme as a PDF.", ""),
            _tier("Home rehab kit", 89, 200, 1, "The kit and the printed programme.", "United States"),
            _tier(
                "Kit + six video sessions",
                249,
                40,
                1,
                "The kit and six 20-minute video sessions with a therapist.",
                "United States",
            ),
        ),
    ),
    DemoCampaign(
        key="heartline-seed-round",
        org="heartline",
        kind=K.EQUITY,
        category=C.MEDICAL_DEVICES,
        currency="CNY",
        goal=250_000,
        title="Heartline Medical: seed round",
        summary="Heartline raised its seed round from the public: preferred shares at ¥5, issued when the round settled.",
        state=S.SETTLED,
        started_days_ago=95,
        ends_in_days=-60,
        story="""\
# Heart monitors for every community clinic

Heartline makes wearable heart monitors that a township clinic can afford. This round paid
for the engineering team that turned the first prototype into PulseStrip.

## The round

- Preferred shares at ¥5.00 each, on a pre-money valuation of ¥30 million
- Minimum ¥250,000, maximum ¥600,000, from ¥1,000 per investor

## What happened

The round reached its minimum. Every investor's card was charged when it closed, the money
was paid out to Heartline through HealthFund's settlement, and the shares were issued:
each investor has a subscription certificate, and Heartline's cap table lists them.

Investing in a young company is risky: you may lose the money you invest.
""",
        terms={
            "security_type": SecurityType.PREFERRED,
            "price_per_share": 5,
            "pre_money_valuation": 30_000_000,
            "min_target": 250_000,
            "max_target": 600_000,
            "min_investment": 1_000,
        },
    ),
    DemoCampaign(
        key="qingshan-portable-ultrasound",
        org="qingshan",
        kind=K.DEBT,
        category=C.CLINICS_CARE,
        currency="CNY",
        goal=100_000,
        title="Qingshan: a portable ultrasound for home visits",
        summary="A one-year loan to a rural health centre for a portable ultrasound its doctors take to housebound patients.",
        state=S.SETTLED,
        started_days_ago=160,
        ends_in_days=-130,
        story="""\
# Scans at the patient's bedside

Many of our older patients cannot make the trip to the health centre for a scan. A portable
ultrasound lets our doctors check hearts, abdomens and pregnancies on home visits.

## The loan

- ¥100,000 to ¥150,000 at 6.0 % a year, repaid in 12 monthly instalments
- Lenders receive their share of each repayment as it arrives

## Where it stands

The loan was funded, paid out and is being repaid: the first instalments were paid by card
and by bank transfer; one is late, and the late fee was added to it.
""",
        terms={
            "annual_rate": "6.0",
            "term_months": 12,
            "min_amount": 100_000,
            "max_amount": 150_000,
            "min_loan_share": 500,
        },
    ),
)


@dataclass(frozen=True)
class DemoProfile:
    """What an investor states: income and net worth in major units of `currency`."""

    currency: str
    income: int
    net_worth: int
    accredited: bool = False


#: Investor profiles (12-month limits: Ben 7,500 USD, Zhang Wei 125,000 CNY, Liu Yang
#: 40,000 CNY, Carlos 3,500 USD, Priya 40,000 USD; Zhao Lei and Michael are accredited).
PROFILES = {
    "backer@healthfund.example": DemoProfile("USD", 95_000, 150_000),
    "backer2@healthfund.example": DemoProfile("CNY", 600_000, 2_500_000),
    "backer4@healthfund.example": DemoProfile("CNY", 200_000, 800_000),
    "backer5@healthfund.example": DemoProfile("CNY", 3_000_000, 20_000_000, accredited=True),
    "backer8@healthfund.example": DemoProfile("USD", 400_000, 3_000_000, accredited=True),
    "backer10@healthfund.example": DemoProfile("USD", 70_000, 60_000),
    "backer11@healthfund.example": DemoProfile("USD", 180_000, 400_000),
}

#: Cards some backers saved before their sandbox 4242 card (which stays their default):
#: Li Na's old card is saved fine, but the bank declines every charge on it.
EXTRA_CARDS = {"backer3@healthfund.example": "4000 0000 0000 0341"}

#: The settled equity round: its shares were issued when it settled (certificates, cap table).
SETTLED_ROUND = "heartline-seed-round"
#: Shares Heartline states it had issued before the round (¥30 million pre-money at ¥5).
PRE_ROUND_SHARES = {"heartline": 6_000_000}

#: The settled debt campaign whose loan is being repaid; the borrower is the organisation's
#: owner, who saves a sandbox card to repay from.
LOAN_IN_REPAYMENT = "qingshan-portable-ultrasound"
BORROWER = "campaigner@healthfund.example"


@dataclass(frozen=True)
class DemoRepayment:
    """One instalment the borrower repaid, `days_from_due` days after its due date (negative: early)."""

    instalment: int
    method: str  #: "card" (the borrower's saved card) or "bank_transfer" (sandbox, recorded by hand)
    days_from_due: int

    @property
    def key(self) -> str:
        return f"demo:loan:{LOAN_IN_REPAYMENT}:instalment:{self.instalment}"


REPAYMENTS = (DemoRepayment(1, "card", -2), DemoRepayment(2, "bank_transfer", 0))
#: The instalment left unpaid past its grace period: the jobs run the day after the grace
#: period ends, and the late fee (LOAN_LATE_FEE) is added to it.
LATE_INSTALMENT = 3

#: The settled patient-aid appeal: its money stayed in escrow when it settled and goes to the
#: hospital in tranches, each against an itemised invoice of that hospital.
SETTLED_APPEAL = "xiaoyu-s-first-months-of-chemotherapy"
#: The appeal's campaigner, who requests the tranches (the owner of the patient's family).
APPEAL_CAMPAIGNER = "family@healthfund.example"


@dataclass(frozen=True)
class DemoHospital:
    """A hospital an operator registered (with sandbox bank details) and verified."""

    name: str
    licence_number: str
    city: str
    bank_name: str
    account_number: str


HOSPITAL = DemoHospital(
    name="Jiangnan Children's Hospital",
    licence_number="PDY-33010619-5812",
    city="Hangzhou",
    bank_name="Bank of Hangzhou",
    account_number="6222 0202 0011 2233",
)


@dataclass(frozen=True)
class DemoTranche:
    """One tranche of the settled appeal, requested against an itemised invoice.

    `paid`: requested `days_after_settled` days after the appeal settled, approved
    `approved_after_hours` later, paid by the `patient_aid.pay` job when its public notice
    is over. Otherwise requested `hours_before_seed` hours before the seed and approved
    `approved_after_hours` later: its public notice is still running when the seed ends.
    """

    number: int
    purpose: str
    invoice_number: str
    #: (description, amount in major units as the form takes it)
    items: tuple[tuple[str, str], ...]
    paid: bool
    approved_after_hours: int
    days_after_settled: int = 0
    hours_before_seed: int = 0

    @property
    def key(self) -> str:
        return f"demo-tranche-{SETTLED_APPEAL}-{self.number}"


TRANCHES = (
    DemoTranche(
        1,
        "Induction chemotherapy for Chen Xiaoyu (4 weeks in the haematology ward)",
        "JCH-2024-031877",
        (
            ("Induction chemotherapy, weeks 1-4 (Chen Xiaoyu)", "18,600.00"),
            ("Medicines not covered by the medical insurance", "6,480.00"),
            ("Blood and platelet transfusions", "3,960.00"),
            ("Haematology ward, 28 days", "2,820.00"),
        ),
        paid=True,
        days_after_settled=2,
        approved_after_hours=20,
    ),
    DemoTranche(
        2,
        "Consolidation chemotherapy for Chen Xiaoyu, cycle 1",
        "JCH-2024-040215",
        (
            ("Consolidation chemotherapy, cycle 1 (Chen Xiaoyu)", "6,900.00"),
            ("Lumbar puncture and intrathecal therapy", "1,500.00"),
        ),
        paid=False,
        hours_before_seed=30,
        approved_after_hours=27,
    ),
)

#: The live campaign that ends soon after the seed: close it and watch it settle with
#: `flask jobs tick --now …` (see README, "Demo").
ENDING_SOON = "riverside-home-knee-rehab-kit"

#: Where shipped rewards go.
ADDRESSES = {
    "backer@healthfund.example": "Ben Carter\n1420 Maple Avenue, Apt 3B\nPortland, OR 97205\nUnited States",
    "backer1@healthfund.example": "Wang Fang\n18 Wenhua Road, Room 602\nHangzhou, Zhejiang 310012\nChina",
    "backer2@healthfund.example": "Zhang Wei\n88 Nanjing West Road, Flat 12A\nShanghai 200040\nChina",
    "backer3@healthfund.example": "Li Na\n5 Jiefang Avenue, Building 2, Room 301\nWuhan, Hubei 430010\nChina",
    "backer5@healthfund.example": "Zhao Lei\n1 Binjiang Road, Tower B, 20th Floor\nNanjing, Jiangsu 210000\nChina",
    "backer6@healthfund.example": "Qingxi Village Clinic (attn. Huang Min)\nQingxi Village, Anji County\n"
    "Huzhou, Zhejiang 313300\nChina",
    "backer7@healthfund.example": "Sarah Johnson\n27 Elm Street\nDayton, OH 45402\nUnited States",
    "backer8@healthfund.example": "Michael Lee\n940 Sutter Street\nSan Francisco, CA 94109\nUnited States",
    "backer9@healthfund.example": "Emily Davis\n311 Lakeview Drive\nMadison, WI 53703\nUnited States",
    "backer10@healthfund.example": "Carlos Garcia\n2205 Rio Grande Blvd NW\nAlbuquerque, NM 87104\nUnited States",
    "backer11@healthfund.example": "Priya Patel\n66 Commonwealth Avenue\nBoston, MA 02116\nUnited States",
}


@dataclass(frozen=True)
class DemoPledge:
    """One backer's pledge, placed through the pledge service."""

    email: str
    #: The campaign's `DemoCampaign.key`.
    campaign: str
    #: Major units: a "no reward" pledge, an investment, a loan share or a gift.
    amount: int | None = None
    #: Reward: the tier's position in the campaign.
    tier: int | None = None
    quantity: int = 1
    extra: int = 0
    message: str | None = None
    anonymous: bool = False
    #: When it was placed, as a fraction of the campaign's time open so far (of all of it
    #: once closed); None: when the seed runs (donations to open campaigns are charged then).
    at: float | None = None
    #: The saved card it is paid with, by its last four digits (None: the backer's default).
    card: str | None = None

    @property
    def token(self) -> str:
        return f"demo:{self.email}:{self.campaign}"


def _backer(n: int | None) -> str:
    return "backer@healthfund.example" if n is None else f"backer{n}@healthfund.example"


def _pledges() -> tuple[DemoPledge, ...]:
    pulse, care = "pulsestrip-portable-ecg-patch", "caredose-smart-pill-dispenser"
    medbridge, clearpath = "medbridge-telemedicine-platform", "clearpath-diagnostics-lab"
    qingshan, riverside = "qingshan-dialysis-unit", "riverside-physio-equipment-loan"
    xiaoyu, chw, sightline = (
        "help-xiaoyu-beat-leukaemia",
        "train-community-health-workers",
        "sightline-retinal-screening",
    )
    quietcuff, guardian, rehab = (
        "quietcuff-talking-blood-pressure-monitor",
        "caredose-fall-alert-pendant",
        ENDING_SOON,
    )
    seed_round, ultrasound = "heartline-seed-round", "qingshan-portable-ultrasound"
    first_appeal = SETTLED_APPEAL
    P = DemoPledge
    b = _backer
    return (
        # Rewards. PulseStrip's village clinic bundle (5 made) has 2 left; CareDose's "Two homes" (3) has 1.
        P(b(1), pulse, tier=1, at=0.10),
        P(b(3), pulse, tier=2, at=0.18),
        P(b(6), pulse, tier=3, quantity=2, at=0.25),
        P(b(2), pulse, tier=1, quantity=2, at=0.40),
        P(b(4), pulse, tier=0, extra=50, at=0.55),
        P(b(5), pulse, tier=3, at=0.70),
        P(b(None), pulse, tier=0, at=0.80),
        P(b(12), pulse, amount=200, at=0.90),
        P(b(7), care, tier=3, at=0.05),
        P(b(9), care, tier=1, at=0.15),
        P(b(10), care, tier=2, at=0.30),
        P(b(11), care, tier=1, extra=20, at=0.45),
        P(b(12), care, tier=0, at=0.60),
        P(b(None), care, tier=2, at=0.75),
        P(b(8), care, tier=3, at=0.85),
        # Equity: whole shares (MedBridge ¥10, ClearPath $2.50), within each investor's limit.
        P(b(5), medbridge, amount=300_000, at=0.08),
        P(b(2), medbridge, amount=50_000, at=0.20),
        P(b(8), medbridge, amount=100_000, at=0.35),
        P(b(4), medbridge, amount=10_000, at=0.50),
        P(b(None), medbridge, amount=5_000, at=0.65),
        P(b(8), clearpath, amount=25_000, at=0.12),
        P(b(11), clearpath, amount=10_000, at=0.30),
        P(b(None), clearpath, amount=1_000, at=0.50),
        P(b(10), clearpath, amount=500, at=0.70),
        # Debt: loan shares.
        P(b(5), qingshan, amount=200_000, at=0.15),
        P(b(2), qingshan, amount=20_000, at=0.35),
        P(b(4), qingshan, amount=5_000, at=0.55),
        P(b(None), qingshan, amount=3_000, at=0.75),
        P(b(8), riverside, amount=15_000, at=0.10),
        P(b(11), riverside, amount=5_000, at=0.40),
        P(b(None), riverside, amount=2_000, at=0.60),
        P(b(10), riverside, amount=1_000, at=0.80),
        # Donations to open campaigns: charged through the sandbox when the seed runs.
        P(b(1), xiaoyu, amount=500, message="Get well soon, Xiaoyu! We are all cheering for you."),
        P(b(3), xiaoyu, amount=200),
        P(
            b(6),
            xiaoyu,
            amount=1_000,
            anonymous=True,
            message="From the mother of a leukaemia survivor: the hard months end. Stay strong.",
        ),
        P(b(2), xiaoyu, amount=2_000),
        P(b(None), xiaoyu, amount=300, message="Draw us a horse when you are better!"),
        P(b(5), xiaoyu, amount=5_000),
        P(b(4), xiaoyu, amount=100),
        P(b(7), chw, amount=40, message="For one blood-pressure monitor."),
        P(b(9), chw, amount=150),
        P(b(12), chw, amount=400, message="One full training course. Thank you for your work."),
        P(b(None), chw, amount=50),
        P(b(11), chw, amount=100),
        # The closed campaign: given while it was open; together they passed its goal.
        P(b(5), sightline, amount=100_000, at=0.10, message="In memory of my father, who lost his sight."),
        P(b(2), sightline, amount=30_000, at=0.25),
        P(b(4), sightline, amount=10_000, at=0.40),
        P(b(3), sightline, amount=5_000, at=0.55),
        P(b(6), sightline, amount=3_000, at=0.70),
        P(b(1), sightline, amount=2_000, at=0.85),
        P(b(None), sightline, amount=500, at=0.95),
        # The settled patient-aid appeal: given while it was open, past its goal; the money
        # stayed in escrow and goes to the hospital in tranches.
        P(b(5), first_appeal, amount=20_000, at=0.10),
        P(
            b(2),
            first_appeal,
            amount=10_000,
            at=0.20,
            message="Be brave, Xiaoyu. Our whole office is with you.",
        ),
        P(b(6), first_appeal, amount=8_000, at=0.30),
        P(b(1), first_appeal, amount=3_000, at=0.45),
        P(b(3), first_appeal, amount=2_000, at=0.55),
        P(b(4), first_appeal, amount=1_500, at=0.65),
        P(b(None), first_appeal, amount=1_000, at=0.75, message="For Xiaoyu, from Portland."),
        P(b(12), first_appeal, amount=500, at=0.90),
        # Settled: charged when it closed; Li Na's card was declined on every try until the
        # grace period ended, so her pledge was dropped; fees taken and the rest paid out.
        P(b(5), quietcuff, tier=2, quantity=12, at=0.10),
        P(b(2), quietcuff, tier=2, quantity=10, at=0.20),
        P(b(3), quietcuff, tier=2, quantity=6, at=0.35, card="0341"),
        P(b(6), quietcuff, tier=2, quantity=5, at=0.45),
        P(b(1), quietcuff, tier=1, quantity=2, at=0.60),
        P(b(4), quietcuff, tier=0, extra=270, at=0.70),
        P(b(None), quietcuff, tier=0, extra=70, at=0.80),
        P(b(12), quietcuff, amount=500, at=0.90),
        # Failed (all-or-nothing, far from its goal): released at close, nobody charged.
        P(b(None), guardian, tier=1, at=0.15),
        P(b(7), guardian, tier=2, at=0.30),
        P(b(9), guardian, tier=1, at=0.50),
        P(b(10), guardian, tier=0, extra=15, at=0.65),
        P(b(11), guardian, amount=100, at=0.80),
        # The settled equity round: charged at close, paid out, shares issued (Ben holds 1,000).
        P(b(5), seed_round, amount=150_000, at=0.10),
        P(b(8), seed_round, amount=60_000, at=0.25),
        P(b(2), seed_round, amount=30_000, at=0.40),
        P(b(4), seed_round, amount=10_000, at=0.55),
        P(b(11), seed_round, amount=10_000, at=0.70),
        P(b(None), seed_round, amount=5_000, at=0.85),
        # The loan in repayment: funded, paid out, opened by the loans job.
        P(b(5), ultrasound, amount=60_000, at=0.10),
        P(b(8), ultrasound, amount=30_000, at=0.30),
        P(b(2), ultrasound, amount=10_000, at=0.50),
        P(b(4), ultrasound, amount=5_000, at=0.65),
        P(b(None), ultrasound, amount=2_000, at=0.80),
        # Ends soon, past its goal: the newcomer closes it and watches it settle.
        P(b(7), rehab, tier=1, at=0.10),
        P(b(8), rehab, tier=2, quantity=2, at=0.20),
        P(b(9), rehab, tier=1, at=0.30),
        P(b(10), rehab, tier=2, at=0.45),
        P(b(11), rehab, tier=1, quantity=2, at=0.55),
        P(b(12), rehab, tier=0, extra=40, at=0.70),
        P(b(None), rehab, tier=1, at=0.80),
        P(b(1), rehab, amount=300, at=0.90),
    )


PLEDGES = _pledges()
