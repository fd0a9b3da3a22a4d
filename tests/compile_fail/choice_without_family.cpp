// expect: check_trainer_argument<tessera::Random>.*argument is not a tessera policy
#include <tessera/trainer.hpp>
// A bare choice: the user meant DataSplit<Random>.
tessera::Trainer<tessera::Random> trainer({}, tessera::optim::sgd(0.1));
int main() {}
