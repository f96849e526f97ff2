"""CDK building blocks shared by the stacks: tagging, policy acknowledgements, removal policies.

Infrastructure code only. Runtime code must not import this package (it imports aws_cdk).
"""
