package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/cmd"
	"sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

// runKwok starts kwok's controller. Global flags (logging, --config) are
// parsed from a separate, lenient flag set first, because they configure the
// context the command itself is built with.
func runKwok(_ []string) int {
	// Kubernetes packages linked into this binary register a non-bool
	// --version on pflag's global set at init, and cobra merges that set into
	// every root command, clashing with kwok's own --version. kwok is the only
	// command of this process, so it gets a clean global set.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)

	globals := pflag.NewFlagSet("global", pflag.ContinueOnError)
	globals.ParseErrorsAllowlist.UnknownFlags = true
	globals.Usage = func() {}

	ctx := signals.SetupSignalContext()
	ctx, logger := log.InitFlags(ctx, globals)
	ctx, err := config.InitFlags(ctx, globals)
	if err != nil {
		fmt.Fprint(os.Stderr, globals.FlagUsages())
		logger.Error("kwok: reading configuration flags", "err", err)
		return 1
	}
	command := cmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(globals)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("kwok: exited", "err", err)
		return 1
	}
	return 0
}

// printStages writes kwok's own default Stage documents, as shipped with the
// kwok version this binary is built from, so the launcher can adjust and load
// them without keeping a copy that drifts from kwok.
func printStages(_ []string) int {
	docs := []string{
		nodefast.DefaultNodeInit,
		nodeheartbeat.DefaultNodeHeartbeat,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	for i, doc := range docs {
		if i > 0 {
			fmt.Println("---")
		}
		fmt.Println(strings.TrimSpace(doc))
	}
	return 0
}
