from stackforge_operator.cli import main

raise SystemExit(main())
