"""Toy labelled traces for the tagger tests (one sentence per tag, twice)."""

TOY_TRACES = [
    [
        "Okay, so the problem asks for the sum of two numbers.",
        "I need to find the total first.",
        "I remember that addition is commutative.",
        "So 3 + 4 = 7.",
        "Wait, is that right?",
        "Let me check: 7 - 4 = 3.",
        "So the total is 7.",
        "The answer is \\boxed{7}.",
    ],
    [
        "The problem gives a triangle with sides 3 and 4.",
        "Let me plan: use the Pythagorean theorem.",
        "The formula is a^2 + b^2 = c^2.",
        "Compute 9 + 16 = 25.",
        "Hmm, maybe I made a mistake?",
        "Let me verify by plugging in.",
        "Therefore c = 5.",
        "So the final answer is \\boxed{5}.",
    ],
]
TOY_TAGS = [
    [
        "problem_setup",
        "plan_generation",
        "fact_retrieval",
        "active_computation",
        "uncertainty_management",
        "self_checking",
        "result_consolidation",
        "final_answer_emission",
    ]
] * 2
