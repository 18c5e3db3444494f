"""``python -m shared.devhost``: the command developers and scripts have always used; the dev host itself lives in
:mod:`shared.local.devhost`, with the rest of the local-only code."""

if __name__ == "__main__":
    from shared.local.devhost import main

    main()
