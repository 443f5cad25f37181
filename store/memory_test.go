package store_test

import (
	"testing"

	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() }, nil)
}
