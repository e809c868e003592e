"""``mmate-gen diff``: every change between two spec sets, classified as WIRE (the JSON), CODE
(the generated Python) or TOPOLOGY (what the broker refuses or strands), each with a severity,
the spec locations on both sides and a suggested migration. The rules and their words are in
``rules``; ``wire``, ``code`` and ``topology`` decide which rule a change falls under."""
