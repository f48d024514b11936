"""A small labelled set for recall quality: memories of one customer (plus agent-wide
ones) and questions whose answers are known memories."""

MEMORIES = [
    "The customer is allergic to peanuts.",
    "The customer prefers deliveries after 6 pm on weekdays.",
    "The customer's billing address is 12 Rue de la Paix, Paris.",
    "The customer has a golden retriever named Biscuit.",
    "The customer likes their coffee black without sugar.",
    "The customer speaks French and German.",
    "The customer's favourite football team is Olympique Lyonnais.",
    "The customer works as a nurse on night shifts.",
    "The customer wants invoices sent by email, never by post.",
    "The customer's last order was a blue winter jacket, size M.",
    "The customer is vegetarian and does not eat fish.",
    "The customer's daughter starts university in September.",
    "The customer plays the piano in a jazz band.",
    "The customer drives an electric car and asked about charging stations.",
    "The customer is planning a holiday to Japan in April.",
    "The customer complained that the mobile app crashes on login.",
    "The customer reads science fiction novels before bed.",
    "The customer prefers to be contacted by phone in the morning.",
    "The customer's password reset email never arrived.",
    "The customer runs marathons and trains every Sunday.",
    "The customer is learning to cook Thai food.",
    "The customer has two cats who dislike the new cat food.",
]

AGENT_WIDE = [
    "The shop is open from 9 am to 7 pm, Monday to Saturday.",
    "Returns are accepted within 30 days with the receipt.",
    "Standard shipping takes three to five working days.",
    "Gift cards cannot be exchanged for cash.",
]

# (question, indices of relevant memories: i for MEMORIES[i], "w<i>" for AGENT_WIDE[i])
QUERIES = [
    ("Does the customer have any food allergies?", [0]),
    ("When should we deliver the parcel?", [1]),
    ("Where do we send the bill?", [2, 8]),
    ("What pets does the customer have?", [3, 21]),
    ("How does the customer take their coffee?", [4]),
    ("Which languages does the customer speak?", [5]),
    ("What sport team does the customer support?", [6]),
    ("What is the customer's job?", [7]),
    ("What did the customer buy last time?", [9]),
    ("Can I recommend a fish dish to the customer?", [10]),
    ("Does the customer play a musical instrument?", [12]),
    ("What kind of car does the customer drive?", [13]),
    ("Where is the customer travelling on vacation?", [14]),
    ("What problem did the customer have with the app?", [15]),
    ("What books does the customer like?", [16]),
    ("What is the best time to call the customer?", [17]),
    ("When is the shop open?", ["w0"]),
    ("Can I return an item?", ["w1"]),
    ("How long does shipping take?", ["w2"]),
    ("Does the customer do any running?", [19]),
]
